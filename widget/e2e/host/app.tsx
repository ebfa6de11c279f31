// A stand-in for the CRM's React cockpit on its own origin: it embeds the widget package and
// hands it tokens from its own short-lived session (`/token` of the host server, as a host app
// would from its identity provider). The browser test watches what it shows.
import { createRoot } from 'react-dom/client';

import { FollowUpWidget } from '../../src/index';

declare global {
  interface Window {
    tokensFetched: number;
  }
}

const params = new URLSearchParams(location.search);
const gateway = params.get('gateway') ?? '';
window.tokensFetched = 0;

async function getToken(): Promise<string | null> {
  const answer = await fetch('/token', { cache: 'no-store' });
  if (!answer.ok) return null;
  window.tokensFetched++;
  return ((await answer.json()) as { token: string }).token;
}

createRoot(document.getElementById('root')!).render(
  <main>
    <h1 style={{ fontSize: 20 }}>CRM · Vertriebscockpit</h1>
    <FollowUpWidget
      baseUrl={gateway}
      getToken={getToken}
      locale={params.get('lang') ?? undefined}
      timeZone="Europe/Berlin"
    />
  </main>,
);
