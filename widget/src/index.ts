// @followup/cockpit-widget: the follow-up figures of followup-pipeline's gateway for the CRM's
// React cockpit — the hook, the widget, and the framework-free feed underneath.
export { FollowUpWidget, type FollowUpWidgetProps } from './FollowUpWidget';
export { useFollowUpMetrics, type FollowUpMetricsOptions, type FollowUpMetricsState } from './useFollowUpMetrics';
export { FigureFeed, StreamRefused, type FeedListener, type FeedOptions } from './feed';
export { SseParser, readFrames, type SseFrame } from './sse';
export { tokenExpiresAt, renewalDelay } from './token';
export { MESSAGES, formatsFor, languageOf, type Language, type Messages, type Formats } from './i18n';
export type { ErrorBody, Figures, StreamStatus, Trend } from './types';
