// The portal's entry point: sign-in, navigation between the pages
// (#communicator, #contacts, #history, #voicemail, #balance, #profile) and
// the communicator's controls. See portal/README.md for the element ids.
//
// What is kept where: the API token in api.js's memory, the SIP password in
// the JsSIP user agent's; nothing in localStorage, sessionStorage or
// cookies. A reload signs out.

import * as api from './api.js';
import { $, say } from './dom.js';
import { Communicator } from './communicator.js';
import * as pages from './pages.js';

const communicator = new Communicator();
// For tests and the curious: window.communicator.mediaStats().
window.communicator = communicator;

const PAGES = {
  communicator: null,
  contacts: pages.contacts,
  history: pages.history,
  voicemail: pages.voicemail,
  balance: pages.balance,
  profile: pages.profile,
};

/** Who signed in: the ID typed (for password change) and the login. */
let who = null;

const ctx = {
  communicator,
  signedInAs: () => who?.id,
  callTo(target) {
    go('communicator');
    $('call-target').value = target;
    communicator.call(target);
  },
  chatWith(target) {
    go('communicator');
    communicator.open(target);
    $('chat-text').focus();
  },
};

communicator.onPresence = pages.showPresence;
communicator.loadHistory = async (peer) => {
  const { messages } = await api.get(`/v1/history/messages?with=${encodeURIComponent(peer)}&limit=50`);
  return messages.reverse().map((m) => ({
    direction: m.direction,
    text: m.text ?? `[${m.content_type}]`,
    at: m.created_at,
    status: m.direction === 'sent' ? m.status : 'received',
  }));
};

function go(page) {
  if (location.hash !== `#${page}`) location.hash = page;
  else show(page);
}

async function show(page) {
  if (!api.signedIn()) return;
  if (!(page in PAGES)) page = 'communicator';
  document.body.dataset.page = page;
  for (const section of document.querySelectorAll('main > section[data-page]')) {
    section.hidden = section.dataset.page !== page;
  }
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.getAttribute('href') === `#${page}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const load = PAGES[page];
  if (!load) return;
  const result = `${page}-page-error`;
  say(result, '');
  try {
    await load(ctx);
  } catch (err) {
    say(result, pages.problem(err), 'error');
    if (err instanceof api.ApiError && err.status === 401) signOut();
  }
}

async function pageConfig() {
  const response = await fetch('config.json', { cache: 'no-store', credentials: 'omit' });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  return response.json();
}

async function signIn(e) {
  e.preventDefault();
  const button = $('login-submit');
  button.disabled = true;
  say('login-error', '');
  try {
    const id = $('login-id').value.trim();
    const credentials = await api.post('/v1/login', { id, password: $('login-password').value });
    $('login-password').value = '';
    api.setToken(credentials.token);
    who = { id, login: credentials.login };
    const config = await pageConfig();
    say('whoami', credentials.login);
    document.body.dataset.signedIn = 'true';
    $('signin-page').hidden = true;
    $('app').hidden = false;
    if (config.wss_url) {
      communicator.start({
        login: credentials.login,
        sipPassword: credentials.sip_password,
        domain: credentials.sip_domain,
        wssUrl: config.wss_url,
      });
    } else {
      say('sip-info', 'the switch has no WebSocket listener (sip.wss): calls and chat are off', 'error');
    }
    await show(location.hash.slice(1) || 'communicator');
  } catch (err) {
    api.setToken(null);
    say('login-error', pages.problem(err), 'error');
  } finally {
    button.disabled = false;
  }
}

function signOut() {
  communicator.stop();
  api.setToken(null);
  who = null;
  document.body.dataset.signedIn = 'false';
  $('app').hidden = true;
  $('signin-page').hidden = false;
  say('whoami', '');
  $('login-password').focus();
}

function wire() {
  $('login-form').addEventListener('submit', signIn);
  $('logout-button').addEventListener('click', signOut);
  window.addEventListener('hashchange', () => show(location.hash.slice(1)));

  $('call-form').addEventListener('submit', (e) => {
    e.preventDefault();
    communicator.call($('call-target').value);
  });
  $('answer-button').addEventListener('click', () => communicator.answer());
  $('hangup-button').addEventListener('click', () => communicator.hangup());
  $('mute-button').addEventListener('click', () => communicator.toggleMute());
  for (const button of document.querySelectorAll('#keypad button[data-tone]')) {
    button.addEventListener('click', () => communicator.sendDtmf(button.dataset.tone));
  }
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (communicator.send($('chat-to').value, $('chat-text').value)) $('chat-text').value = '';
  });
  $('chat-to').addEventListener('change', () => communicator.open($('chat-to').value));

  pages.wireContacts(ctx);
  pages.wireVoicemail();
  pages.wireBalance();
  pages.wireProfile(ctx);

  communicator.setStatus('idle');
  document.body.dataset.ready = 'true';
}

wire();
