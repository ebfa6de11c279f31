// The CRM sprint's hook, exactly as the sprint writes it (sprint-2.1.1, "WebSocket Integration"),
// mounted on a page of the gateway's origin (the CRM behind the same reverse proxy), whose
// session cookie the page got from POST /api/session. It renders what the hook returns.
import { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';

interface FollowUpMetrics {
  pendingT3: number;
  pendingT7: number;
  sentToday: number;
  conversionRate: number;
}

// --- verbatim from the sprint ---
const useFollowUpMetrics = () => {
  const [metrics, setMetrics] = useState<FollowUpMetrics>();

  useEffect(() => {
    const eventSource = new EventSource('/api/dashboard/followup-stream');

    eventSource.onmessage = (event) => {
      const data = JSON.parse(event.data);
      setMetrics(data);
    };

    return () => eventSource.close();
  }, []);

  return { data: metrics };
};
// --- end of the sprint's code ---

function Probe() {
  const { data } = useFollowUpMetrics();
  return <pre id="crm">{data ? JSON.stringify(data) : ''}</pre>;
}

async function main() {
  const token = new URLSearchParams(location.hash.slice(1)).get('token') ?? '';
  const answer = await fetch('/api/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  document.body.dataset.session = String(answer.status);
  createRoot(document.getElementById('root')!).render(<Probe />);
}

void main();
