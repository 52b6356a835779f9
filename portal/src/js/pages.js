// The account pages: address book with presence, call history, voicemail
// and its settings, balance and vouchers, profile and password. Each reads
// and writes the client API (/v1/, host/src/api/openapi.json) with the
// signed-in user's bearer token; forms are plain submit handlers (the token
// is a header, not a cookie, so no CSRF token is needed).

import * as api from './api.js';
import { $, el, fill, say, when, duration } from './dom.js';

/** A readable line for an API error. */
export function problem(err) {
  if (err instanceof api.ApiError) return `${err.message} (${err.code})`;
  return String(err?.message || err);
}

/** Runs `work` with `button` disabled, showing failures in #resultId. */
async function busy(button, resultId, work) {
  button.disabled = true;
  try {
    await work();
  } catch (err) {
    say(resultId, problem(err), 'error');
  } finally {
    button.disabled = false;
  }
}

/** Buttons to call or chat with `target` (a login or number). */
function actions(ctx, target) {
  return el('span', { class: 'actions' },
    el('button', {
      type: 'button', class: 'small', 'data-action': 'call', 'data-target': target,
      text: 'Call', onclick: () => ctx.callTo(target),
    }),
    el('button', {
      type: 'button', class: 'small secondary', 'data-action': 'chat', 'data-target': target,
      text: 'Chat', onclick: () => ctx.chatWith(target),
    }));
}

function presenceBadge(login, entry) {
  const state = entry?.state || 'unknown';
  const label = { open: 'online', closed: 'offline', hidden: 'not shared', unknown: '…' }[state] || state;
  return el('span', {
    class: 'presence', 'data-login': login, 'data-state': state,
    title: entry?.note || '', text: label,
  });
}

/** Updates every presence badge of `login` on the page. */
export function showPresence(login, entry) {
  for (const badge of document.querySelectorAll('.presence[data-login]')) {
    if (badge.dataset.login === login) badge.replaceWith(presenceBadge(login, entry));
  }
}

// Address book.

export async function contacts(ctx) {
  say('contacts-result', 'loading…');
  const { contacts: book } = await api.get('/v1/contacts');
  say('contacts-result', book.length ? '' : 'Your address book is empty: your phone app uploads it. Find other users below.');
  fill($('contacts-list'), book.map((c) => {
    if (c.login) ctx.communicator.watchPresence(c.login);
    return el('tr', { 'data-number': c.number, 'data-login': c.login || undefined },
      el('td', { text: c.name || '' }),
      el('td', { text: c.number }),
      el('td', {}, c.login ? presenceBadge(c.login, ctx.communicator.presence.get(c.login)) : el('span', { class: 'muted', text: 'not a user' })),
      el('td', {}, actions(ctx, c.login || c.number)));
  }));
}

export function wireContacts(ctx) {
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = $('search-text').value.trim();
    if (q.length < 2) {
      say('search-result', 'type at least 2 letters', 'error');
      return;
    }
    busy($('search-button'), 'search-result', async () => {
      const { users } = await api.get(`/v1/users/search?q=${encodeURIComponent(q)}&limit=20`);
      say('search-result', users.length ? '' : 'nobody found');
      fill($('search-results'), users.map((u) => {
        const name = u.display_name || [u.first_name, u.last_name].filter(Boolean).join(' ') || u.username || u.login;
        return el('li', { 'data-login': u.login },
          el('span', { class: 'who', text: name }),
          el('span', { class: 'muted', text: ` ${u.username || u.login} ` }),
          actions(ctx, u.login));
      }));
    });
  });
}

// Call history.

export async function history(ctx) {
  say('history-result', 'loading…');
  const { calls } = await api.get('/v1/history/calls?limit=50');
  say('history-result', calls.length ? '' : 'No calls yet.');
  fill($('calls-list'), calls.map((c) => el('tr', {
    'data-call-id': c.call_id, 'data-direction': c.direction, 'data-outcome': c.outcome,
  },
  el('td', { text: c.direction === 'outgoing' ? '↗ out' : '↙ in' }),
  el('td', { text: c.peer }),
  // Call records are in Unix milliseconds (messages and voicemails in seconds).
  el('td', { text: when(c.started_at / 1000) }),
  el('td', { text: c.answered_at ? duration(c.duration_secs) : '' }),
  el('td', { text: c.outcome }),
  el('td', {}, actions(ctx, c.peer)))));
}

// Voicemail and its settings (answering rules).

let playing = null;

async function play(id) {
  const audio = $('voicemail-audio');
  if (playing) URL.revokeObjectURL(playing);
  // The recording needs the bearer token, so it is fetched here and
  // played from memory (CSP media-src blob:).
  playing = URL.createObjectURL(await api.blob(`/v1/voicemails/${id}/audio`));
  audio.src = playing;
  audio.dataset.voicemail = String(id);
  await audio.play().catch(() => {});
  await api.patch(`/v1/voicemails/${id}`, { heard: true });
}

export async function voicemail(ctx) {
  say('voicemail-result', 'loading…');
  const box = await api.get('/v1/voicemails?limit=50');
  say('voicemail-counts', `${box.new} new, ${box.heard} heard`);
  say('voicemail-result', box.voicemails.length ? '' : 'No voicemail.');
  fill($('voicemail-list'), box.voicemails.map((v) => el('tr', {
    'data-voicemail': v.id, 'data-heard': String(v.heard),
  },
  el('td', { text: v.caller_name ? `${v.caller_name} (${v.caller})` : v.caller }),
  el('td', { text: when(v.created_at) }),
  el('td', { text: duration(v.duration_ms / 1000) }),
  el('td', { text: v.heard ? 'heard' : 'new' }),
  el('td', {},
    el('button', {
      type: 'button', class: 'small', id: `voicemail-play-${v.id}`, text: 'Play',
      onclick: (e) => busy(e.currentTarget, 'voicemail-result', async () => {
        await play(v.id);
        await voicemail(ctx);
      }),
    }),
    el('button', {
      type: 'button', class: 'small secondary', text: v.heard ? 'Mark new' : 'Mark heard',
      onclick: (e) => busy(e.currentTarget, 'voicemail-result', async () => {
        await api.patch(`/v1/voicemails/${v.id}`, { heard: !v.heard });
        await voicemail(ctx);
      }),
    }),
    el('button', {
      type: 'button', class: 'small danger', id: `voicemail-delete-${v.id}`, text: 'Delete',
      onclick: (e) => busy(e.currentTarget, 'voicemail-result', async () => {
        await api.del(`/v1/voicemails/${v.id}`);
        await voicemail(ctx);
      }),
    }),
    actions(ctx, v.caller)))));
  await rules();
}

const ACTIONS = {
  ring: 'ring, then voicemail',
  'ring-only': 'ring, never voicemail',
  voicemail: 'straight to voicemail',
  reject: 'reject',
};

async function rules() {
  const { rules: list } = await api.get('/v1/answering-rules');
  fill($('rules-list'), list.map((r) => el('tr', { 'data-rule': r.id, 'data-caller': r.caller },
    el('td', { text: r.caller === '*' ? 'everyone else (*)' : r.caller }),
    el('td', { text: ACTIONS[r.action] || r.action }),
    el('td', {}, el('button', {
      type: 'button', class: 'small danger', text: 'Delete',
      onclick: (e) => busy(e.currentTarget, 'rule-result', async () => {
        await api.del(`/v1/answering-rules/${r.id}`);
        say('rule-result', 'rule deleted', 'ok');
        await rules();
      }),
    })))));
}

export function wireVoicemail() {
  $('rule-form').addEventListener('submit', (e) => {
    e.preventDefault();
    busy($('rule-save'), 'rule-result', async () => {
      await api.put('/v1/answering-rules', {
        caller: $('rule-caller').value.trim() || '*',
        action: $('rule-action').value,
      });
      say('rule-result', 'rule saved', 'ok');
      await rules();
    });
  });
}

// Balance and vouchers.

export async function balance() {
  const b = await api.get('/v1/balance?limit=20');
  say('balance-amount', `${b.balance} ${b.currency}`);
  say('balance-available', b.available !== b.balance ? `${b.available} ${b.currency} available (calls under way hold the rest)` : '');
  fill($('ledger-list'), b.ledger.map((row) => el('tr', { 'data-ledger': row.id, 'data-kind': row.kind },
    el('td', { text: when(row.created_at) }),
    el('td', { text: row.kind }),
    el('td', { class: 'num', text: row.amount }),
    el('td', { class: 'num', text: row.balance_after }),
    el('td', { text: row.reference || '' }))));
}

export function wireBalance() {
  $('voucher-form').addEventListener('submit', (e) => {
    e.preventDefault();
    busy($('voucher-submit'), 'voucher-result', async () => {
      const moved = await api.post('/v1/vouchers/redeem', { pin: $('voucher-pin').value });
      $('voucher-pin').value = '';
      say('voucher-result', `+${moved.amount} ${moved.currency}: your balance is ${moved.balance} ${moved.currency}`, 'ok');
      await balance();
    });
  });
}

// Profile and password.

const PROFILE_FIELDS = [
  'display_name', 'first_name', 'last_name', 'email', 'birthday', 'city', 'country',
  'language', 'time_zone', 'username',
];

let shownProfile = {};

export async function profile() {
  const p = await api.get('/v1/profile');
  shownProfile = p;
  say('profile-login', p.login || '');
  say('profile-phone', p.phone || '—');
  for (const field of PROFILE_FIELDS) {
    const input = $(`profile-${field}`);
    input.value = p[field] ?? '';
  }
  // The service ID can be chosen once.
  $('profile-username').readOnly = Boolean(p.username);
}

export function wireProfile(ctx) {
  $('profile-form').addEventListener('submit', (e) => {
    e.preventDefault();
    busy($('profile-save'), 'profile-result', async () => {
      const changes = {};
      for (const field of PROFILE_FIELDS) {
        const value = $(`profile-${field}`).value.trim();
        if (value !== (shownProfile[field] ?? '')) changes[field] = value;
      }
      if (!Object.keys(changes).length) {
        say('profile-result', 'nothing changed');
        return;
      }
      shownProfile = await api.patch('/v1/profile', changes);
      say('profile-result', 'saved', 'ok');
      await profile();
    });
  });
  $('password-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const fresh = $('password-new').value;
    if (fresh !== $('password-new2').value) {
      say('password-result', 'the new passwords differ', 'error');
      return;
    }
    busy($('password-submit'), 'password-result', async () => {
      await api.post('/v1/password/change', {
        id: ctx.signedInAs(),
        password: $('password-old').value,
        new_password: fresh,
      });
      for (const id of ['password-old', 'password-new', 'password-new2']) $(id).value = '';
      say('password-result', 'password changed', 'ok');
    });
  });
}
