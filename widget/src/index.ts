// @followup/cockpit-widget: the follow-up figures of followup-pipeline's gateway for the CRM's
// React cockpit — the hook, the widget, and the framework-free feed underneath.
export { FollowUpWidget, type FollowUpWidgetProps } from './FollowUpWidget';
export { useFollowUpMetrics, type FollowUpMetricsOptions, type FollowUpMetricsState } from './useFollowUpMetrics';
export {
  useFollowUpLeads,
  type FollowUpLeadsOptions,
  type FollowUpLeadsState,
  type LoadStatus,
} from './useFollowUpLeads';
export { useFollowUpHistory, type FollowUpHistoryOptions, type FollowUpHistoryState } from './useFollowUpHistory';
export { LeadList, type LeadListProps } from './LeadList';
export { HistoryChart, type HistoryChartProps } from './HistoryChart';
export { FigureFeed, type FeedListener, type FeedOptions } from './feed';
export { StreamRefused, getJson, type GatewayOptions } from './request';
export { SseParser, readFrames, type SseFrame } from './sse';
export { tokenExpiresAt, renewalDelay } from './token';
export { MESSAGES, formatsFor, languageOf, type Language, type Messages, type Formats } from './i18n';
export type {
  DueClass,
  ErrorBody,
  Figures,
  History,
  HistoryDay,
  LeadFigure,
  LeadItem,
  LeadPage,
  StreamStatus,
  Trend,
} from './types';
