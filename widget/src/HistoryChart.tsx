// The last days as a bar chart in inline SVG (no chart library): per day, the follow-ups sent —
// T+3 solid at the bottom, T+7 hatched on top — and, beside them, the conversions dotted. Not
// colour alone: the three series differ by pattern, the legend names them, the total of each
// bar is written above it, and a visually hidden table holds every number for screen readers.
// Each bar carries `data-date`, `data-series` and `data-value`.
import { type CSSProperties, useId } from 'react';

import type { Formats, Messages } from './i18n';
import type { HistoryDay } from './types';

export interface HistoryChartProps {
  days: HistoryDay[];
  text: Messages;
  formats: Formats;
}

const WIDTH = 480;
const HEIGHT = 170;
const LEFT = 26;
const BOTTOM = 18;
const TOP = 12;
const T3 = '#1d4ed8';
const T7 = '#7c3aed';
const CONVERSIONS = '#047857';

const styles: Record<string, CSSProperties> = {
  figure: { margin: '16px 0 0' },
  caption: { fontSize: 14, fontWeight: 600, margin: '0 0 4px' },
  legend: { display: 'flex', flexWrap: 'wrap', gap: 12, listStyle: 'none', padding: 0, margin: '4px 0 0', fontSize: 12 },
  key: { display: 'inline-flex', alignItems: 'center', gap: 4 },
  hidden: {
    position: 'absolute',
    width: 1,
    height: 1,
    padding: 0,
    margin: -1,
    overflow: 'hidden',
    clip: 'rect(0 0 0 0)',
    whiteSpace: 'nowrap',
    border: 0,
  },
};

/** A round upper bound for the axis: 1, 2, 5 × 10^n. */
function niceMax(value: number): number {
  if (value <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

export function HistoryChart({ days, text, formats }: HistoryChartProps) {
  const id = useId().replace(/:/g, '');
  const hatch = `${id}-t7`;
  const dots = `${id}-conv`;
  const titleId = `${id}-title`;
  const fills = { t3Sent: T3, t7Sent: `url(#${hatch})`, conversions: `url(#${dots})` } as const;
  const max = niceMax(Math.max(0, ...days.map((d) => Math.max(d.t3Sent + d.t7Sent, d.conversions))));
  const plotW = WIDTH - LEFT - 4;
  const plotH = HEIGHT - TOP - BOTTOM;
  const slot = plotW / Math.max(1, days.length);
  const y = (v: number) => TOP + plotH - (v / max) * plotH;
  const h = (v: number) => (v / max) * plotH;
  const sum = (key: 't3Sent' | 't7Sent' | 'conversions') => days.reduce((n, d) => n + d[key], 0);
  const summary = text.chart.summary(
    formats.integer(sum('t3Sent')),
    formats.integer(sum('t7Sent')),
    formats.integer(sum('conversions')),
    days.length,
  );
  const labelEvery = Math.max(1, Math.ceil(days.length / 6));
  const swatch = (fill: string) => (
    <svg width="14" height="14" aria-hidden="true" focusable="false">
      <rect x="0.5" y="0.5" width="13" height="13" fill={fill} stroke="#374151" />
    </svg>
  );

  return (
    <figure style={styles.figure} data-chart data-days={days.length}>
      <figcaption id={titleId} style={styles.caption}>
        {text.chart.title(days.length)}
      </figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} width="100%" role="img" aria-labelledby={titleId} aria-describedby={`${id}-desc`}>
        <desc id={`${id}-desc`}>{summary}</desc>
        <defs>
          <pattern id={hatch} width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
            <rect width="4" height="4" fill="#ede9fe" />
            <line x1="0" y1="0" x2="0" y2="4" stroke={T7} strokeWidth="2.5" />
          </pattern>
          <pattern id={dots} width="4" height="4" patternUnits="userSpaceOnUse">
            <rect width="4" height="4" fill="#d1fae5" />
            <circle cx="2" cy="2" r="1.2" fill={CONVERSIONS} />
          </pattern>
        </defs>
        {[0, max / 2, max].map((v) => (
          <g key={v} aria-hidden="true">
            <line x1={LEFT} x2={WIDTH - 4} y1={y(v)} y2={y(v)} stroke="#d1d5db" strokeDasharray={v ? '2 3' : undefined} />
            <text x={LEFT - 4} y={y(v) + 3} fontSize="9" textAnchor="end" fill="#374151">
              {formats.integer(v)}
            </text>
          </g>
        ))}
        {days.map((day, i) => {
          const x = LEFT + i * slot;
          const barW = slot * 0.5;
          const sent = day.t3Sent + day.t7Sent;
          const label = formats.dayShort(day.date);
          return (
            <g key={day.date} data-day={day.date}>
              {day.t3Sent > 0 && (
                <rect x={x + 1} y={y(day.t3Sent)} width={barW} height={h(day.t3Sent)} fill={fills.t3Sent}
                  data-date={day.date} data-series="t3Sent" data-value={day.t3Sent}>
                  <title>{`${label}: ${text.chart.t3Sent} ${formats.integer(day.t3Sent)}`}</title>
                </rect>
              )}
              {day.t7Sent > 0 && (
                <rect x={x + 1} y={y(sent)} width={barW} height={h(day.t7Sent)} fill={fills.t7Sent} stroke={T7} strokeWidth="0.5"
                  data-date={day.date} data-series="t7Sent" data-value={day.t7Sent}>
                  <title>{`${label}: ${text.chart.t7Sent} ${formats.integer(day.t7Sent)}`}</title>
                </rect>
              )}
              {day.conversions > 0 && (
                <rect x={x + 1 + barW} y={y(day.conversions)} width={slot * 0.3} height={h(day.conversions)} fill={fills.conversions}
                  stroke={CONVERSIONS} strokeWidth="0.5" data-date={day.date} data-series="conversions" data-value={day.conversions}>
                  <title>{`${label}: ${text.chart.conversions} ${formats.integer(day.conversions)}`}</title>
                </rect>
              )}
              {sent > 0 && (
                <text x={x + 1 + barW / 2} y={y(sent) - 2} fontSize="8" textAnchor="middle" fill="#111827" aria-hidden="true">
                  {formats.integer(sent)}
                </text>
              )}
              {/* A date every few days, and today's at the right edge (ending there, not cut off). */}
              {(i === days.length - 1 || (i % labelEvery === 0 && days.length - 1 - i > labelEvery / 2)) && (
                <text
                  x={i === days.length - 1 ? x + slot : x + slot / 2}
                  y={HEIGHT - 5}
                  fontSize="9"
                  textAnchor={i === days.length - 1 ? 'end' : 'middle'}
                  fill="#374151"
                  aria-hidden="true"
                >
                  {label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <ul style={styles.legend} aria-hidden="true">
        <li style={styles.key}>{swatch(fills.t3Sent)}{text.chart.t3Sent}</li>
        <li style={styles.key}>{swatch(fills.t7Sent)}{text.chart.t7Sent}</li>
        <li style={styles.key}>{swatch(fills.conversions)}{text.chart.conversions}</li>
      </ul>
      <table style={styles.hidden} data-chart-table>
        <caption>{`${text.chart.title(days.length)}: ${summary}`}</caption>
        <thead>
          <tr>
            <th scope="col">{text.chart.date}</th>
            <th scope="col">{text.chart.t3Sent}</th>
            <th scope="col">{text.chart.t7Sent}</th>
            <th scope="col">{text.chart.conversions}</th>
            <th scope="col">{text.chart.failed}</th>
          </tr>
        </thead>
        <tbody>
          {days.map((day) => (
            <tr key={day.date}>
              <th scope="row">{formats.date(day.date)}</th>
              <td>{formats.integer(day.t3Sent)}</td>
              <td>{formats.integer(day.t7Sent)}</td>
              <td>{formats.integer(day.conversions)}</td>
              <td>{formats.integer(day.failed)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
