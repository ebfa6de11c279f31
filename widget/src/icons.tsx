// The tiles' icons: small inline SVGs (no icon library for the host to align versions with),
// hidden from screen readers since each tile's label says the same.
import type { ReactElement } from 'react';

const frame = (children: ReactElement | ReactElement[]) => (
  <svg
    width="16"
    height="16"
    viewBox="0 0 24 24"
    fill="none"
    stroke="currentColor"
    strokeWidth="2"
    strokeLinecap="round"
    strokeLinejoin="round"
    aria-hidden="true"
    focusable="false"
  >
    {children}
  </svg>
);

export const ClockIcon = () =>
  frame([<circle key="c" cx="12" cy="12" r="9" />, <path key="p" d="M12 7v5l3 2" />]);

export const CalendarIcon = () =>
  frame([
    <rect key="r" x="3" y="5" width="18" height="16" rx="2" />,
    <path key="p" d="M16 3v4M8 3v4M3 10h18" />,
  ]);

export const MailIcon = () =>
  frame([<rect key="r" x="3" y="5" width="18" height="14" rx="2" />, <path key="p" d="m3 7 9 6 9-6" />]);

export const TrendingUpIcon = () =>
  frame([<path key="a" d="m3 17 6-6 4 4 8-8" />, <path key="b" d="M15 7h6v6" />]);
