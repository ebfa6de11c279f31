// The widget's words in German (the CRM's UI language, the default) and English, and the
// formatting of numbers, percentages and times for the locale.
import type { StreamStatus, Trend } from './types';

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
}

export function formatsFor(locale: string, timeZone: string): Formats {
  const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
  const percent = new Intl.NumberFormat(locale, {
    style: 'percent',
    minimumFractionDigits: 1,
    maximumFractionDigits: 2,
  });
  const time = new Intl.DateTimeFormat(locale, { timeStyle: 'medium', timeZone });
  return {
    integer: (n) => integer.format(n),
    percent: (n) => percent.format(n / 100),
    time: (iso) => {
      const at = Date.parse(iso);
      return Number.isNaN(at) ? '' : time.format(at);
    },
  };
}
