// The demo's availability panel: set a user's availability, and show them as another user sees them beside the backend's truth.
/* global fetch, setInterval */

import { createPresenceClient } from 'express-presence/client';

const config = await (await fetch('/config')).json();
const form = document.getElementById('availability-form');
const rows = document.getElementById('availability-rows');
/** userId -> { seen: what a viewer is shown, truth: what the backend's query answers } */
const users = new Map();

// A viewer of its own (a user nobody plays), so the panel shows exactly what other users are shown:
// an invisible user is Offline to it, with the last seen frozen at the moment they went invisible.
const viewer = createPresenceClient({
  platform: 'Web',
  auth: { user: `availability-viewer-${Math.random().toString(36).slice(2, 8)}` },
  trackVisibility: false,
  trackActivity: false,
});

function cell(text, className = '') {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function render() {
  rows.replaceChildren();
  for (const [userId, { seen, truth }] of users) {
    const tr = document.createElement('tr');
    tr.append(
      cell(userId),
      cell(seen ? `${seen.status} · ${seen.availability}${seen.customStatus ? ` · “${seen.customStatus}”` : ''}` : '…'),
      cell(seen?.lastSeen ?? seen?.lastSeenApprox ?? '–', 'muted small'),
      cell(truth ? `${truth.status} · ${truth.availability}${truth.idleSince ? ` since ${new Date(truth.idleSince).toLocaleTimeString()}` : ''}` : '…'),
    );
    rows.append(tr);
  }
}

/** The backend's truth, through the admin route (DEMO ONLY: the page holds the admin token). */
async function refreshTruth() {
  if (users.size === 0) return;
  const response = await fetch('/presence/users/query', {
    method: 'POST',
    headers: { authorization: `Bearer ${config.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ userIds: [...users.keys()] }),
  });
  if (!response.ok) return;
  for (const truth of (await response.json()).users) {
    const entry = users.get(truth.userId);
    if (entry) entry.truth = truth;
  }
  render();
}

async function watch(userId) {
  if (users.has(userId)) return;
  users.set(userId, { seen: undefined, truth: undefined });
  const {
    users: [seen],
  } = await viewer.subscribe([userId], (change) => {
    const entry = users.get(change.userId);
    if (entry) entry.seen = change;
    void refreshTruth();
  });
  users.get(userId).seen = seen;
  await refreshTruth();
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const userId = document.getElementById('availability-user').value.trim();
  const availability = document.getElementById('availability-value').value;
  await watch(userId);
  // DEMO ONLY: the server sets it (presence.setAvailability); a user's own device would call client.setAvailability().
  const response = await fetch('/demo/availability', {
    method: 'POST',
    headers: { authorization: `Bearer ${config.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ userId, availability }),
  });
  if (!response.ok) form.dataset.error = (await response.json()).error;
  else delete form.dataset.error;
  await refreshTruth();
});

viewer.once('session', () => void watch(document.getElementById('availability-user').value.trim()));
// Idleness happens without an event the viewer would see for a user it does not watch: refresh now and then.
setInterval(() => void refreshTruth(), 3000);
