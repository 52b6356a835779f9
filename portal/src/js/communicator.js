// The web communicator: a JsSIP user agent registered over the switch's
// WSS listener (RFC 7118) for audio calls, DTMF, chat (SIP MESSAGE) and
// presence (SUBSCRIBE/NOTIFY with PIDF).
//
// The SIP password that login returned is handed to the user agent and kept
// nowhere else: not in storage, not in this object. It lives in the UA's
// memory until sign-out or the tab closes.
//
// Tests drive the page through the element ids of portal/README.md and
// read `window.communicator.mediaStats()`.

import JsSIP from '../vendor/jssip.js';
import { $, el, fill, say, when } from './dom.js';

/** Values of #call-status. */
export const STATUS = Object.freeze({
  IDLE: 'idle',
  CALLING: 'calling',
  RINGING: 'ringing',
  IN_CALL: 'in-call',
  ENDED: 'ended',
});

/** Values of #sip-status. */
const REG = Object.freeze({
  OFFLINE: 'offline',
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  REGISTERED: 'registered',
  FAILED: 'failed',
  DISCONNECTED: 'disconnected',
});

// JsSIP sends its offer once ICE gathering completes. Host candidates come
// at once; a STUN or TURN server that does not answer would hold the call
// for its whole timeout, so the offer goes out this long after the first
// candidate (the switch adds its relay candidate anyway).
const ICE_GATHERING_MS = 2000;

const AUDIO_ONLY = Object.freeze({ audio: true, video: false });

/** The user part of a SIP URI or of what the user typed: a chat peer's key. */
function peerOf(target) {
  let t = String(target).trim();
  t = t.replace(/^sips?:/i, '');
  return t.split('@')[0];
}

/** The text of PIDF `<basic>` (open/closed) and `<note>`, or null. */
function parsePidf(body) {
  if (!body) return null;
  const doc = new DOMParser().parseFromString(body, 'application/xml');
  if (doc.getElementsByTagName('parsererror').length) return null;
  const basic = doc.getElementsByTagNameNS('*', 'basic')[0]?.textContent?.trim() || null;
  const note = doc.getElementsByTagNameNS('*', 'note')[0]?.textContent?.trim() || '';
  return basic ? { basic, note } : null;
}

/**
 * `sdp` without the peer's own ICE candidates: only the relay candidates
 * (the switch's media relay adds one to each offer and answer) are left.
 */
export function onlyRelayCandidates(sdp) {
  return sdp
    .split('\r\n')
    .filter((line) => !line.startsWith('a=candidate:') || / typ relay( |$)/.test(line))
    .join('\r\n');
}

export class Communicator {
  constructor() {
    /**
     * Media only through the switch's relay: the peer's host and
     * server-reflexive candidates are dropped from its SDP. For checking
     * the relay path (the tests do) and for networks where direct paths
     * look usable but are not.
     */
    this.forceRelay = false;
    this.ua = null;
    this.login = null;
    this.domain = null;
    this.session = null;
    this.connection = null;
    this.status = STATUS.IDLE;
    this.registration = REG.OFFLINE;
    /** What JsSIP last offered and got (debugging a call that fails). */
    this.sdp = { local: '', remote: '' };
    /** peer -> [{direction, text, at, status}] */
    this.conversations = new Map();
    this.current = null;
    this.historyLoaded = new Set();
    /** login -> {subscriber, state, note} */
    this.presence = new Map();
    this.onPresence = () => {};
    this.loadHistory = async () => [];
  }

  /**
   * Registers `login` over `wssUrl`. `sipPassword` goes to the UA only.
   */
  start({ login, sipPassword, domain, wssUrl, displayName }) {
    this.stop();
    this.login = login;
    this.domain = domain;
    const socket = new JsSIP.WebSocketInterface(wssUrl);
    this.ua = new JsSIP.UA({
      sockets: [socket],
      uri: `sip:${login}@${domain}`,
      authorization_user: login,
      password: sipPassword,
      display_name: displayName || undefined,
      register: true,
      // Ten minutes: the switch keeps a browser's binding only while its
      // WebSocket lives anyway (RFC 5626 flow), so no need for long ones.
      register_expires: 600,
      session_timers: true,
      user_agent: `softswitch-portal JsSIP/${JsSIP.version}`,
      connection_recovery_min_interval: 2,
      connection_recovery_max_interval: 30,
    });
    this.setRegistration(REG.CONNECTING);
    this.ua.on('connecting', () => this.setRegistration(REG.CONNECTING));
    this.ua.on('connected', () => this.setRegistration(REG.CONNECTED));
    this.ua.on('disconnected', () => this.setRegistration(REG.DISCONNECTED));
    this.ua.on('registered', () => {
      this.setRegistration(REG.REGISTERED);
      for (const login of this.presence.keys()) this.resubscribe(login);
    });
    this.ua.on('unregistered', () => this.setRegistration(REG.CONNECTED));
    this.ua.on('registrationFailed', (e) => {
      this.setRegistration(REG.FAILED);
      say('sip-info', `registration failed: ${e.cause}`, 'error');
    });
    this.ua.on('newRTCSession', (e) => this.onSession(e));
    this.ua.on('newMessage', (e) => this.onMessage(e));
    this.ua.start();
  }

  /** Unregisters and forgets the UA (and with it the SIP password). */
  stop() {
    for (const p of this.presence.values()) p.subscriber?.terminate();
    this.presence.clear();
    if (this.ua) {
      this.ua.stop();
      this.ua = null;
    }
    this.session = null;
    this.connection = null;
    this.conversations.clear();
    this.historyLoaded.clear();
    this.current = null;
    this.setRegistration(REG.OFFLINE);
    this.setStatus(STATUS.IDLE);
  }

  setRegistration(value) {
    this.registration = value;
    const node = document.getElementById('sip-status');
    if (node) {
      node.textContent = value;
      node.dataset.state = value;
    }
    if (value === REG.REGISTERED) say('sip-info', '');
  }

  setStatus(value) {
    this.status = value;
    const node = $('call-status');
    node.textContent = value;
    node.dataset.state = value;
    const ringing = value === STATUS.RINGING;
    const busy = value === STATUS.CALLING || value === STATUS.RINGING || value === STATUS.IN_CALL;
    $('answer-button').hidden = !ringing;
    $('answer-button').disabled = !ringing;
    $('hangup-button').disabled = !busy;
    $('call-button').disabled = busy;
    $('mute-button').disabled = value !== STATUS.IN_CALL;
    $('keypad').dataset.enabled = String(value === STATUS.IN_CALL);
    document.body.dataset.call = value;
  }

  /** A SIP URI for what the user typed: a login, a number or a URI. */
  uriFor(target) {
    const t = String(target).trim();
    if (/^sips?:/i.test(t)) return t;
    if (t.includes('@')) return `sip:${t}`;
    // Spaces, dashes and brackets people write in numbers.
    const user = /^[+\d\s\-().]+$/.test(t) ? t.replace(/[\s\-().]/g, '') : t;
    return `sip:${user}@${this.domain}`;
  }

  call(target) {
    if (!this.ua || this.session || !String(target).trim()) return;
    say('call-info', '');
    say('dtmf-sent', '');
    say('dtmf-received', '');
    this.ua.call(this.uriFor(target), {
      mediaConstraints: AUDIO_ONLY,
      pcConfig: { iceServers: [] },
      rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
    });
  }

  answer() {
    if (this.session && this.status === STATUS.RINGING) {
      this.session.answer({ mediaConstraints: AUDIO_ONLY, pcConfig: { iceServers: [] } });
    }
  }

  /** Hangs up, cancels, or declines (603) a call that rings here. */
  hangup() {
    if (!this.session) return;
    const ringingHere = this.status === STATUS.RINGING;
    try {
      this.session.terminate(ringingHere ? { status_code: 603, reason_phrase: 'Decline' } : {});
    } catch (e) {
      // Already ending: JsSIP throws on a second terminate.
      console.warn('hangup', e);
    }
  }

  toggleMute() {
    if (!this.session || this.status !== STATUS.IN_CALL) return;
    const muted = this.session.isMuted().audio;
    if (muted) this.session.unmute({ audio: true });
    else this.session.mute({ audio: true });
    $('mute-button').textContent = muted ? 'Mute' : 'Unmute';
    $('mute-button').setAttribute('aria-pressed', String(!muted));
  }

  /**
   * Sends one DTMF tone: RFC 4733 telephone-events in the media (what the
   * switch's IVR and carriers read) or SIP INFO (application/dtmf-relay).
   */
  sendDtmf(tone, transport = $('dtmf-mode').value) {
    if (!this.session || this.status !== STATUS.IN_CALL) return;
    const transportType = transport === 'info'
      ? JsSIP.C.DTMF_TRANSPORT.INFO
      : JsSIP.C.DTMF_TRANSPORT.RFC2833;
    this.session.sendDTMF(tone, { transportType, duration: 120, interToneGap: 80 });
    $('dtmf-sent').textContent += tone;
  }

  onSession({ session, originator }) {
    if (this.session) {
      // One call at a time: a second incoming call hears busy.
      if (originator === 'remote') session.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
      return;
    }
    this.session = session;
    this.connection = null;
    this.sdp = { local: '', remote: '' };
    const peer = session.remote_identity;
    const name = peer.display_name ? `${peer.display_name} (${peer.uri.user})` : peer.uri.user;
    say('call-peer', name);
    if (originator === 'remote') {
      say('call-info', '');
      say('dtmf-sent', '');
      say('dtmf-received', '');
    }
    this.setStatus(originator === 'local' ? STATUS.CALLING : STATUS.RINGING);

    session.on('peerconnection', (e) => this.watch(e.peerconnection));
    if (session.connection) this.watch(session.connection);
    session.on('sdp', (e) => {
      // JsSIP applies what the handler leaves in e.sdp.
      if (e.originator === 'remote' && this.forceRelay) e.sdp = onlyRelayCandidates(e.sdp);
      this.sdp[e.originator] = e.sdp;
    });
    let gatheringTimer = null;
    session.on('icecandidate', (e) => {
      if (!gatheringTimer) gatheringTimer = setTimeout(e.ready, ICE_GATHERING_MS);
    });
    session.on('progress', (e) => {
      if (e.originator === 'remote' && e.response?.status_code === 180) say('call-info', 'ringing');
    });
    session.on('accepted', () => {
      say('call-info', '');
      this.setStatus(STATUS.IN_CALL);
    });
    session.on('confirmed', () => this.setStatus(STATUS.IN_CALL));
    session.on('newDTMF', (e) => {
      if (e.originator === 'remote') $('dtmf-received').textContent += e.dtmf.tone;
    });
    const end = (e) => {
      clearTimeout(gatheringTimer);
      if (this.session !== session) return;
      this.session = null;
      this.setStatus(STATUS.ENDED);
      say('call-info', e.cause || '');
      $('mute-button').textContent = 'Mute';
      const audio = $('remote-audio');
      audio.srcObject = null;
    };
    session.on('ended', end);
    session.on('failed', end);
  }

  watch(pc) {
    if (this.connection === pc) return;
    this.connection = pc;
    const audio = $('remote-audio');
    pc.addEventListener('track', (e) => {
      audio.srcObject = e.streams[0] || new MediaStream([e.track]);
      audio.play().catch(() => {
        // Autoplay refused until the user touches the page: the call
        // still works, the next click plays it.
      });
    });
    const ice = () => say('ice-state', pc.iceConnectionState);
    pc.addEventListener('iceconnectionstatechange', ice);
    ice();
  }

  /**
   * Audio RTP counters of the call under way, from getStats():
   * {packetsSent, packetsReceived, bytesReceived, audioLevel, iceState,
   * localCandidate, remoteCandidate, remoteReports, roundTripTime}: the
   * last two from the peer's RTCP receiver reports on what we send
   * (remote-inbound-rtp). Zeros when there is no call.
   */
  async mediaStats() {
    const out = {
      packetsSent: 0,
      packetsReceived: 0,
      bytesReceived: 0,
      audioLevel: 0,
      iceState: this.connection?.iceConnectionState ?? 'none',
      localCandidate: null,
      remoteCandidate: null,
      remoteReports: 0,
      roundTripTime: null,
    };
    const pc = this.session ? this.connection : null;
    if (!pc || pc.signalingState === 'closed') return out;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    report.forEach((s) => {
      if ((s.type === 'outbound-rtp' || s.type === 'inbound-rtp') && s.kind !== 'audio') return;
      if (s.type === 'outbound-rtp') out.packetsSent += s.packetsSent || 0;
      if (s.type === 'inbound-rtp') {
        out.packetsReceived += s.packetsReceived || 0;
        out.bytesReceived += s.bytesReceived || 0;
        out.audioLevel = Math.max(out.audioLevel, s.audioLevel || 0);
      }
      if (s.type === 'remote-inbound-rtp' && s.kind === 'audio') {
        out.remoteReports += s.roundTripTimeMeasurements || 0;
        if (s.roundTripTime !== undefined) out.roundTripTime = s.roundTripTime;
      }
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        const local = pair && byId.get(pair.localCandidateId);
        const remote = pair && byId.get(pair.remoteCandidateId);
        if (local) out.localCandidate = `${local.candidateType} ${local.address ?? local.ip}:${local.port}`;
        if (remote) out.remoteCandidate = `${remote.candidateType} ${remote.address ?? remote.ip}:${remote.port}`;
      }
    });
    return out;
  }

  // Chat.

  conversation(peer) {
    if (!this.conversations.has(peer)) this.conversations.set(peer, []);
    return this.conversations.get(peer);
  }

  /** Opens the conversation with `peer` in #chat-log (history first). */
  async open(target) {
    const peer = peerOf(target);
    if (!peer) return;
    this.current = peer;
    $('chat-to').value = peer;
    const list = this.conversation(peer);
    list.unread = 0;
    this.render();
    if (this.historyLoaded.has(peer)) return;
    this.historyLoaded.add(peer);
    let older = [];
    try {
      older = await this.loadHistory(peer);
    } catch (e) {
      console.warn('history', e);
    }
    // Live messages already shown may be in the stored history too.
    const seen = new Set(older.map((m) => `${m.direction}\n${m.text}`));
    const live = list.filter((m) => !seen.has(`${m.direction}\n${m.text}`));
    list.splice(0, list.length, ...older, ...live);
    this.render();
  }

  send(target, text) {
    const peer = peerOf(target);
    if (!this.ua || !peer || !text.trim()) return false;
    if (this.current !== peer) this.open(peer);
    const entry = { direction: 'sent', text, at: Date.now() / 1000, status: 'sending' };
    this.conversation(peer).push(entry);
    this.render();
    this.ua.sendMessage(this.uriFor(target), text, {
      contentType: 'text/plain',
      eventHandlers: {
        succeeded: (e) => {
          // 202: the peer has no device now; the switch keeps it for them.
          entry.status = e.response?.status_code === 202 ? 'stored' : 'delivered';
          this.render();
        },
        failed: (e) => {
          entry.status = 'failed';
          entry.error = e.cause;
          this.render();
        },
      },
    });
    return true;
  }

  onMessage({ originator, request }) {
    if (originator !== 'remote') return;
    const peer = request.from.uri.user;
    const type = (request.getHeader('Content-Type') || 'text/plain').toLowerCase();
    // System commands (files, contact changes) are for the apps; the
    // portal shows text and names anything else.
    const text = type.startsWith('text/') ? request.body : `[${type.split(';')[0]}]`;
    const list = this.conversation(peer);
    list.push({ direction: 'received', text, at: Date.now() / 1000, status: 'received' });
    if (!this.current) {
      this.open(peer);
      return;
    }
    if (this.current !== peer) list.unread = (list.unread || 0) + 1;
    this.render();
  }

  render() {
    const peers = [...this.conversations.keys()].sort();
    fill(
      $('chat-conversations'),
      peers.map((peer) => {
        const unread = this.conversations.get(peer).unread || 0;
        return el('li', {},
          el('button', {
            type: 'button',
            class: 'conversation',
            'data-peer': peer,
            'aria-current': peer === this.current ? 'true' : undefined,
            onclick: () => this.open(peer),
          }, peer, unread ? el('span', { class: 'badge', text: unread }) : null));
      }),
    );
    const list = this.current ? this.conversation(this.current) : [];
    fill(
      $('chat-log'),
      list.map((m) => el('li', {
        class: 'chat-message',
        'data-direction': m.direction,
        'data-status': m.status,
      },
      el('span', { class: 'chat-text', text: m.text }),
      el('span', { class: 'chat-meta', text: `${when(m.at)} · ${m.status}${m.error ? ` (${m.error})` : ''}` }))),
    );
    const log = $('chat-log');
    log.scrollTop = log.scrollHeight;
  }

  // Presence.

  /** Watches `login`'s presence (SUBSCRIBE presence, PIDF). */
  watchPresence(login) {
    if (!this.ua || this.presence.has(login)) return;
    this.presence.set(login, { subscriber: null, state: 'unknown', note: '' });
    this.resubscribe(login);
  }

  resubscribe(login) {
    const entry = this.presence.get(login);
    if (!entry || !this.ua) return;
    entry.subscriber?.terminate();
    const subscriber = this.ua.subscribe(this.uriFor(login), 'presence', 'application/pidf+xml', {
      expires: 600,
      contentType: 'application/pidf+xml',
    });
    entry.subscriber = subscriber;
    subscriber.on('notify', (_final, _request, body) => {
      const doc = parsePidf(body);
      entry.state = doc ? doc.basic : 'unknown';
      entry.note = doc?.note || '';
      this.onPresence(login, entry);
    });
    subscriber.on('terminated', (code) => {
      if (entry.subscriber !== subscriber) return;
      // 403: the watch policy lets only users in the presentity's own
      // address book see it.
      entry.state = code === subscriber.C.SUBSCRIBE_NON_OK_RESPONSE ? 'hidden' : 'unknown';
      entry.subscriber = null;
      this.onPresence(login, entry);
    });
    subscriber.subscribe();
  }
}
