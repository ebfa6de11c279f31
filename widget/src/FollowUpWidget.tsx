// `<FollowUpWidget />` of the CRM's sprint: four tiles (T+3 pending, T+7 pending, sent today,
// conversion rate) with icons and trends, live. German by default, English by `locale`; numbers,
// percentages and the time of the figures formatted for the locale, the time in `timeZone`
// (the gateway's FOLLOWUP_TZ). Changes are announced politely to screen readers; every tile is
// reachable by keyboard and reads as one sentence. Styles are React style objects, which a
// host's Content-Security-Policy without 'unsafe-inline' allows.
//
// Each tile is a button that opens the leads behind it (`LeadList`, under the tiles; Esc closes
// it and the focus returns to the tile); the footer opens the failed ones. Under the tiles, the
// last `historyDays` days as a chart (`HistoryChart`), whose today bucket is reloaded when a
// frame brings changed figures (and at least once a minute while frames come).
import { type CSSProperties, type KeyboardEvent, type ReactElement, useId, useRef, useState } from 'react';

import { HistoryChart } from './HistoryChart';
import { formatsFor, languageOf, MESSAGES } from './i18n';
import { CalendarIcon, ClockIcon, MailIcon, TrendingUpIcon } from './icons';
import { LeadList } from './LeadList';
import type { Figures, LeadFigure, Trend } from './types';
import { useFollowUpHistory } from './useFollowUpHistory';
import { type FollowUpMetricsOptions, useFollowUpMetrics } from './useFollowUpMetrics';

/** Props: where the figures come from (see {@link FollowUpMetricsOptions}) and how to show them. */
export interface FollowUpWidgetProps extends FollowUpMetricsOptions {
  /** `de` (default), `en`, a locale such as `de-CH`, or `auto` for the browser's languages. */
  locale?: string;
  /** IANA zone the "as of" time is shown in; the gateway's FOLLOWUP_TZ. */
  timeZone?: string;
  className?: string;
  /** Leads per page of a tile's list (default 25). */
  pageSize?: number;
  /** Days of the chart under the tiles (default 30); 0 hides it. */
  historyDays?: number;
}

/** What makes today's bucket stale: changed figures, or a minute gone by. */
function historyKey(data: Figures | undefined): string | undefined {
  if (!data) return undefined;
  const minute = Math.floor((Date.parse(data.asOf) || 0) / 60_000);
  return `${data.pendingT3}/${data.pendingT7}/${data.sentToday}/${data.conversionRate}/${minute}`;
}

const ARROWS: Record<Trend, string> = { up: '▲', down: '▼', flat: '►' };
const TREND_COLOURS: Record<Trend, string> = { up: '#b45309', down: '#15803d', flat: '#6b7280' };

const styles: Record<string, CSSProperties> = {
  card: {
    fontFamily: 'system-ui, sans-serif',
    border: '1px solid #d1d5db',
    borderRadius: 12,
    padding: 16,
    background: '#fff',
    color: '#111827',
    maxWidth: 520,
  },
  header: { display: 'flex', alignItems: 'baseline', justifyContent: 'space-between', gap: 8 },
  title: { fontSize: 18, margin: '0 0 12px' },
  status: { fontSize: 12, padding: '2px 8px', borderRadius: 999, background: '#f3f4f6' },
  grid: { display: 'grid', gridTemplateColumns: 'repeat(2, minmax(0, 1fr))', gap: 12 },
  tile: { border: '1px solid #e5e7eb', borderRadius: 8, padding: 12, outlineOffset: 2, cursor: 'pointer' },
  open: { border: '2px solid #1d4ed8', borderRadius: 8, padding: 11, outlineOffset: 2, cursor: 'pointer' },
  link: {
    font: 'inherit',
    fontSize: 12,
    background: 'none',
    border: 'none',
    padding: 0,
    color: '#1d4ed8',
    textDecoration: 'underline',
    cursor: 'pointer',
  },
  label: { display: 'flex', alignItems: 'center', gap: 6, fontSize: 13, color: '#374151', margin: 0 },
  value: { fontSize: 28, fontWeight: 600, margin: '6px 0 0', fontVariantNumeric: 'tabular-nums' },
  trend: { fontSize: 14, marginLeft: 8 },
  foot: { fontSize: 12, color: '#4b5563', marginTop: 12, display: 'flex', justifyContent: 'space-between' },
};

interface TileProps {
  figure: string;
  label: string;
  icon: ReactElement;
  value: string;
  trend?: Trend;
  trendText?: string;
  /** The list the tile opens, whether it is open, and how to open it. */
  list: LeadFigure;
  expanded: boolean;
  onOpen: (list: LeadFigure, opener: HTMLElement) => void;
}

function Tile({ figure, label, icon, value, trend, trendText, list, expanded, onOpen }: TileProps) {
  const spoken = trendText ? `${label}: ${value}, ${trendText}` : `${label}: ${value}`;
  const onKeyDown = (event: KeyboardEvent<HTMLElement>) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      onOpen(list, event.currentTarget);
    }
  };
  return (
    <article
      style={expanded ? styles.open : styles.tile}
      tabIndex={0}
      role="button"
      aria-haspopup="dialog"
      aria-expanded={expanded}
      aria-label={spoken}
      data-tile={figure}
      data-list={list}
      onClick={(event) => onOpen(list, event.currentTarget)}
      onKeyDown={onKeyDown}
    >
      <h3 style={styles.label}>
        {icon}
        {label}
      </h3>
      <p style={styles.value} aria-hidden="true">
        <span data-figure={figure}>{value}</span>
        {trend && (
          <span data-trend={trend} title={trendText} style={{ ...styles.trend, color: TREND_COLOURS[trend] }}>
            {ARROWS[trend]}
          </span>
        )}
      </p>
    </article>
  );
}

export function FollowUpWidget({
  locale,
  timeZone = 'Europe/Berlin',
  className,
  pageSize,
  historyDays = 30,
  ...options
}: FollowUpWidgetProps) {
  const { data, status, detail } = useFollowUpMetrics(options);
  const gateway = { baseUrl: options.baseUrl, owner: options.owner, getToken: options.getToken, fetch: options.fetch };
  const history = useFollowUpHistory({ ...gateway, days: Math.max(1, historyDays), refreshOn: historyKey(data) });
  const [list, setList] = useState<LeadFigure | null>(null);
  const opener = useRef<HTMLElement | null>(null);
  const open = (figure: LeadFigure, from: HTMLElement) => {
    opener.current = from;
    setList((shown) => (shown === figure ? null : figure));
  };
  const close = () => {
    setList(null);
    opener.current?.focus();
  };
  const tileList = (figure: LeadFigure) => ({ list: figure, expanded: list === figure, onOpen: open });
  const titleId = useId();
  const language = languageOf(locale);
  const text = MESSAGES[language];
  const formats = formatsFor(locale && locale !== 'auto' ? locale : language, timeZone);
  const dash = '–';
  const count = (n: number | undefined) => (n === undefined ? dash : formats.integer(n));
  const scope = data ? (data.scope === 'org' ? text.organisation : text.user(data.scope.replace(/^user:/, ''))) : '';

  return (
    <section className={className} style={styles.card} lang={language} aria-labelledby={titleId} data-status={status}>
      <header style={styles.header}>
        <h2 id={titleId} style={styles.title}>
          {text.title}
        </h2>
        <span role="status" style={styles.status} data-state={status} title={detail}>
          {text.status[status]}
        </span>
      </header>
      <div style={styles.grid} aria-live="polite" aria-atomic="false">
        <Tile
          figure="pendingT3"
          label={text.pendingT3}
          icon={<ClockIcon />}
          value={count(data?.pendingT3)}
          trend={data?.t3Trend}
          trendText={data ? text.trend[data.t3Trend] : undefined}
          {...tileList('pendingT3')}
        />
        <Tile
          figure="pendingT7"
          label={text.pendingT7}
          icon={<CalendarIcon />}
          value={count(data?.pendingT7)}
          trend={data?.t7Trend}
          trendText={data ? text.trend[data.t7Trend] : undefined}
          {...tileList('pendingT7')}
        />
        <Tile
          figure="sentToday"
          label={text.sentToday}
          icon={<MailIcon />}
          value={count(data?.sentToday)}
          {...tileList('sentToday')}
        />
        <Tile
          figure="conversionRate"
          label={text.conversionRate}
          icon={<TrendingUpIcon />}
          value={data ? formats.percent(data.conversionRate) : dash}
          {...tileList('converted')}
        />
      </div>
      {list && (
        <LeadList key={list} figure={list} text={text} formats={formats} pageSize={pageSize} onClose={close} {...gateway} />
      )}
      {historyDays > 0 && history.days && <HistoryChart days={history.days} text={text} formats={formats} />}
      <footer style={styles.foot}>
        <span data-scope>{scope}</span>
        <button
          type="button"
          style={styles.link}
          aria-haspopup="dialog"
          aria-expanded={list === 'failed'}
          data-open-list="failed"
          onClick={(event) => open('failed', event.currentTarget)}
        >
          {text.list.failed}
        </button>
        <span data-as-of>{data ? text.asOf(formats.time(data.asOf)) : ''}</span>
      </footer>
    </section>
  );
}
