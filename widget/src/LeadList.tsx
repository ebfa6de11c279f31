// The leads behind a tile: a panel under the tiles (a non-modal dialog) with company, owner,
// status, when the next follow-up is due, the last follow-up and, for failed ones, why. Focus
// moves into the panel when it opens and back to the tile when it closes (Esc or the close
// button); "load more" fetches the next page and keeps the focus on itself; how many leads are
// loaded is announced politely.
import { type CSSProperties, type KeyboardEvent, useEffect, useId, useRef } from 'react';

import type { Formats, Messages } from './i18n';
import type { GatewayOptions } from './request';
import type { LeadFigure, LeadItem } from './types';
import { useFollowUpLeads } from './useFollowUpLeads';

export interface LeadListProps extends GatewayOptions {
  figure: LeadFigure;
  text: Messages;
  formats: Formats;
  pageSize?: number;
  onClose: () => void;
}

const styles: Record<string, CSSProperties> = {
  panel: { marginTop: 12, border: '1px solid #9ca3af', borderRadius: 8, padding: 12, background: '#f9fafb' },
  head: { display: 'flex', justifyContent: 'space-between', alignItems: 'baseline', gap: 8 },
  title: { fontSize: 16, margin: 0 },
  scroll: { overflowX: 'auto', marginTop: 8 },
  table: { borderCollapse: 'collapse', width: '100%', fontSize: 13 },
  cell: { textAlign: 'left', padding: '4px 6px', borderBottom: '1px solid #e5e7eb', verticalAlign: 'top' },
  button: { font: 'inherit', fontSize: 13, padding: '4px 10px', borderRadius: 6, border: '1px solid #6b7280', background: '#fff', cursor: 'pointer' },
  note: { fontSize: 12, color: '#374151', margin: '8px 0 0' },
};

function Row({ item, figure, text, formats }: { item: LeadItem; figure: LeadFigure; text: Messages; formats: Formats }) {
  const next = item.nextFollowUp;
  const last = item.lastFollowUp;
  const dash = '–';
  return (
    <tr data-lead={item.leadId}>
      <td style={styles.cell} data-col="company">{item.company}</td>
      <td style={styles.cell} data-col="owner">{item.owner ?? dash}</td>
      <td style={styles.cell} data-col="status">{text.leadStatus[item.status] ?? item.status}</td>
      <td style={styles.cell} data-col="due" data-due={next?.due}>
        {next ? `${text.kind(next.kind)} ${text.due[next.due]}, ${formats.date(next.dueDate)}` : dash}
      </td>
      <td style={styles.cell} data-col="last">
        {last ? `${text.kind(last.kind)}, ${formats.dateTime(last.at)}` : dash}
      </td>
      {figure === 'failed' && (
        <td style={styles.cell} data-col="reason">
          {item.failure ? `${text.kind(item.failure.kind)}: ${item.failure.reason ?? dash}` : dash}
        </td>
      )}
    </tr>
  );
}

export function LeadList({ figure, text, formats, pageSize, onClose, ...gateway }: LeadListProps) {
  const { items, status, error, hasMore, loadMore } = useFollowUpLeads({ figure, pageSize, ...gateway });
  const titleId = useId();
  const heading = useRef<HTMLHeadingElement>(null);
  const more = useRef<HTMLButtonElement>(null);

  // Into the panel when it opens (or shows another figure).
  useEffect(() => heading.current?.focus(), [figure]);
  // The last page came while "load more" had the focus: the button goes, the focus stays inside.
  useEffect(() => {
    if (status === 'ready' && !hasMore && document.activeElement === document.body) heading.current?.focus();
  }, [status, hasMore]);

  const onKeyDown = (event: KeyboardEvent) => {
    if (event.key === 'Escape') {
      event.stopPropagation();
      onClose();
    }
  };
  const count = formats.integer(items.length);
  return (
    <div role="dialog" aria-labelledby={titleId} style={styles.panel} onKeyDown={onKeyDown} data-list={figure}>
      <div style={styles.head}>
        <h3 id={titleId} ref={heading} tabIndex={-1} style={styles.title}>
          {text.list[figure]}
        </h3>
        <button type="button" style={styles.button} onClick={onClose} data-close>
          {text.close}
        </button>
      </div>
      <div style={styles.scroll}>
        <table style={styles.table}>
          <thead>
            <tr>
              <th style={styles.cell} scope="col">{text.columns.company}</th>
              <th style={styles.cell} scope="col">{text.columns.owner}</th>
              <th style={styles.cell} scope="col">{text.columns.status}</th>
              <th style={styles.cell} scope="col">{text.columns.due}</th>
              <th style={styles.cell} scope="col">{text.columns.last}</th>
              {figure === 'failed' && <th style={styles.cell} scope="col">{text.columns.reason}</th>}
            </tr>
          </thead>
          <tbody>
            {items.map((item) => (
              <Row key={item.leadId} item={item} figure={figure} text={text} formats={formats} />
            ))}
          </tbody>
        </table>
      </div>
      <p style={styles.note} aria-live="polite" data-list-status={status}>
        {status === 'loading'
          ? text.loading
          : status === 'error'
            ? text.failedToLoad(error ?? '')
            : status === 'ready' && items.length === 0
              ? text.empty
              : status === 'ready'
                ? text.loaded(count, hasMore)
                : ''}
      </p>
      {hasMore && (
        <button type="button" ref={more} style={styles.button} onClick={loadMore} aria-disabled={status === 'loading'} data-more>
          {text.more}
        </button>
      )}
    </div>
  );
}
