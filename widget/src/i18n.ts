// The widget's words in German (the CRM's UI language, the default) and English, and the
// formatting of numbers, percentages and times for the locale.
import type { DueClass, LeadFigure, StreamStatus, Trend } from './types';

export type Language = 'de' | 'en';

export interface Messages {
  title: string;
  pendingT3: string;
  pendingT7: string;
  sentToday: string;
  conversionRate: string;
  trend: Record<Trend, string>;
  status: Record<StreamStatus, string>;
  asOf: (time: string) => string;
  organisation: string;
  user: (id: string) => string;
  /** The heading of each figure's list. */
  list: Record<LeadFigure, string>;
  /** Opens the list (a tile's hint). */
  openList: string;
  columns: { company: string; owner: string; status: string; due: string; last: string; reason: string };
  due: Record<DueClass, string>;
  /** CRM statuses by their code; unknown ones are shown as they are. */
  leadStatus: Record<string, string>;
  kind: (kind: string) => string;
  more: string;
  close: string;
  loading: string;
  empty: string;
  loaded: (n: string, more: boolean) => string;
  failedToLoad: (detail: string) => string;
  chart: {
    title: (days: number) => string;
    t3Sent: string;
    t7Sent: string;
    conversions: string;
    failed: string;
    date: string;
    summary: (t3: string, t7: string, conversions: string, days: number) => string;
  };
}

export const MESSAGES: Record<Language, Messages> = {
  de: {
    title: 'Follow-up Automation',
    pendingT3: 'T+3 ausstehend',
    pendingT7: 'T+7 ausstehend',
    sentToday: 'Heute versendet',
    conversionRate: 'Konversionsrate',
    trend: { up: 'gestiegen seit Mitternacht', down: 'gesunken seit Mitternacht', flat: 'unverändert seit Mitternacht' },
    status: {
      connecting: 'verbinde …',
      live: 'live',
      reconnecting: 'verbinde neu …',
      'signed-out': 'abgemeldet',
      forbidden: 'kein Zugriff',
    },
    asOf: (time) => `Stand ${time}`,
    organisation: 'Organisation',
    user: (id) => `Benutzer ${id}`,
    list: {
      pendingT3: 'T+3 ausstehend',
      pendingT7: 'T+7 ausstehend',
      sentToday: 'Heute versendet',
      converted: 'Konvertiert nach Follow-up',
      failed: 'Fehlgeschlagen',
    },
    openList: 'Liste öffnen',
    columns: {
      company: 'Firma',
      owner: 'Verantwortlich',
      status: 'Status',
      due: 'Fällig',
      last: 'Letztes Follow-up',
      reason: 'Fehlergrund',
    },
    due: { overdue: 'überfällig', today: 'heute', tomorrow: 'morgen', later: 'später' },
    leadStatus: {
      REGISTERED: 'registriert',
      ACTIVE: 'aktiv',
      REMINDER: 'Erinnerung',
      GRACE_PERIOD: 'Schonfrist',
      QUALIFIED: 'qualifiziert',
      CONVERTED: 'konvertiert',
      LOST: 'verloren',
      EXPIRED: 'abgelaufen',
      EXTENDED: 'verlängert',
    },
    kind: (kind) => (kind === 't3' ? 'T+3' : kind === 't7' ? 'T+7' : kind),
    more: 'Mehr laden',
    close: 'Schließen',
    loading: 'lade …',
    empty: 'Keine Leads.',
    loaded: (n, more) => `${n} Leads geladen${more ? ', weitere vorhanden' : ''}`,
    failedToLoad: (detail) => `Konnte nicht geladen werden: ${detail}`,
    chart: {
      title: (days) => `Letzte ${days} Tage`,
      t3Sent: 'T+3 versendet',
      t7Sent: 'T+7 versendet',
      conversions: 'Konversionen',
      failed: 'Fehlgeschlagen',
      date: 'Tag',
      summary: (t3, t7, conversions, days) =>
        `In den letzten ${days} Tagen ${t3} T+3 und ${t7} T+7 Follow-ups versendet, ${conversions} Konversionen.`,
    },
  },
  en: {
    title: 'Follow-up Automation',
    pendingT3: 'T+3 pending',
    pendingT7: 'T+7 pending',
    sentToday: 'Sent today',
    conversionRate: 'Conversion rate',
    trend: { up: 'up since midnight', down: 'down since midnight', flat: 'unchanged since midnight' },
    status: {
      connecting: 'connecting …',
      live: 'live',
      reconnecting: 'reconnecting …',
      'signed-out': 'signed out',
      forbidden: 'no access',
    },
    asOf: (time) => `as of ${time}`,
    organisation: 'Organisation',
    user: (id) => `User ${id}`,
    list: {
      pendingT3: 'T+3 pending',
      pendingT7: 'T+7 pending',
      sentToday: 'Sent today',
      converted: 'Converted after follow-up',
      failed: 'Failed',
    },
    openList: 'open the list',
    columns: {
      company: 'Company',
      owner: 'Owner',
      status: 'Status',
      due: 'Due',
      last: 'Last follow-up',
      reason: 'Failure reason',
    },
    due: { overdue: 'overdue', today: 'today', tomorrow: 'tomorrow', later: 'later' },
    leadStatus: {
      REGISTERED: 'registered',
      ACTIVE: 'active',
      REMINDER: 'reminder',
      GRACE_PERIOD: 'grace period',
      QUALIFIED: 'qualified',
      CONVERTED: 'converted',
      LOST: 'lost',
      EXPIRED: 'expired',
      EXTENDED: 'extended',
    },
    kind: (kind) => (kind === 't3' ? 'T+3' : kind === 't7' ? 'T+7' : kind),
    more: 'Load more',
    close: 'Close',
    loading: 'loading …',
    empty: 'No leads.',
    loaded: (n, more) => `${n} leads loaded${more ? ', more available' : ''}`,
    failedToLoad: (detail) => `Could not be loaded: ${detail}`,
    chart: {
      title: (days) => `Last ${days} days`,
      t3Sent: 'T+3 sent',
      t7Sent: 'T+7 sent',
      conversions: 'Conversions',
      failed: 'Failed',
      date: 'Day',
      summary: (t3, t7, conversions, days) =>
        `In the last ${days} days ${t3} T+3 and ${t7} T+7 follow-ups sent, ${conversions} conversions.`,
    },
  },
};

/**
 * The language for a locale such as `de-DE`, `en-GB` or `auto` (the browser's preferences);
 * German unless English is asked for.
 */
export function languageOf(locale: string | undefined): Language {
  const wanted =
    locale === 'auto' && typeof navigator !== 'undefined' ? navigator.languages ?? [] : [locale ?? 'de'];
  for (const tag of wanted) {
    const primary = tag.toLowerCase().split('-')[0];
    if (primary === 'de' || primary === 'en') return primary;
  }
  return 'de';
}

/** Formatters for one locale and time zone. */
export interface Formats {
  integer: (n: number) => string;
  /** `conversionRate` is a percentage (12.5 = 12.5 %). */
  percent: (n: number) => string;
  time: (iso: string) => string;
  /** A local day `YYYY-MM-DD`, in full (`30.11.2026`). */
  date: (day: string) => string;
  /** A local day, short (`30.11.`, `30 Nov`). */
  dayShort: (day: string) => string;
  /** An instant as date and time in the zone. */
  dateTime: (iso: string) => string;
}

/** A `YYYY-MM-DD` day as the instant of its midnight in UTC (formatted in UTC, it stays that day). */
function dayInstant(day: string): number {
  return Date.parse(`${day}T00:00:00Z`);
}

export function formatsFor(locale: string, timeZone: string): Formats {
  const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
  const percent = new Intl.NumberFormat(locale, {
    style: 'percent',
    minimumFractionDigits: 1,
    maximumFractionDigits: 2,
  });
  const time = new Intl.DateTimeFormat(locale, { timeStyle: 'medium', timeZone });
  const date = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone: 'UTC' });
  const dayShort = new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'short', timeZone: 'UTC' });
  const dateTime = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone });
  const safely = (format: Intl.DateTimeFormat, at: number) => (Number.isNaN(at) ? '' : format.format(at));
  return {
    date: (day) => safely(date, dayInstant(day)),
    dayShort: (day) => safely(dayShort, dayInstant(day)),
    dateTime: (iso) => safely(dateTime, Date.parse(iso)),
    integer: (n) => integer.format(n),
    percent: (n) => percent.format(n / 100),
    time: (iso) => {
      const at = Date.parse(iso);
      return Number.isNaN(at) ? '' : time.format(at);
    },
  };
}
