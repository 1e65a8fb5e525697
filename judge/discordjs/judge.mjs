// A third-party Discord client for the simulator's tests: discord.js 14 (gateway, REST) and
// @discordjs/voice 0.19 (voice gateway v8, DAVE through @snazzah/davey). Driven line by line
// on stdin by crates/sim/tests/discordjs_judge.rs; reports JSON events, one per line, on
// stdout. It never reaches anything but the simulator on 127.0.0.1.
//
// Environment: SIM_API (the simulator's `api base`, ".../api"), BOT_TOKEN, GUILD_ID;
// JUDGE_NO_DAVE=1 joins voice without DAVE. Voice TLS trusts the simulator's test CA
// through NODE_EXTRA_CA_CERTS.
//
// JUDGE_USER=<user id> (with SIM_CONTROL, the simulator's `/_sim` URL): instead of the bot,
// be a person's voice client — a second real DAVE client in a call. No gateway login; the
// voice adapter asks the control API for what Discord's gateway would give the user's client
// (`POST /_sim/voice/users/{id}/client`) and joins/leaves as that user.
//
// DAVE events reported as they happen: `welcomed` (op 30 processed), `proposals`
// (op 27, with `op`: "append" or "revoke"), `prepare_epoch` (op 24), `prepare_transition`
// (op 21), `transitioned` (op 22 executed, or op 21 with transition 0).
//
// Commands:  join <channel id> | play <frames> | listen <user id> | report | leave |
//            withhold-ready |
//            create <name> | create-many <n> | quit
// `report` includes the DAVE group as this client sees it: `epoch`, `members` (user ids).

import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { Client, Events, GatewayIntentBits, ChannelType } from 'discord.js';
import {
  joinVoiceChannel, VoiceConnectionStatus, createAudioPlayer, createAudioResource, StreamType,
  AudioPlayerStatus, NoSubscriberBehavior, EndBehaviorType, DAVESession,
} from '@discordjs/voice';

const { SIM_API, SIM_CONTROL, BOT_TOKEN, GUILD_ID, JUDGE_USER } = process.env;
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

// The simulator's speech frames: TOC 0xFC and 40 bytes (crates/sim/src/voice/speaker.rs);
// another judge's: TOC 0xFC and 32 bytes (`play` below). Either arrives as such only once
// this client's own DAVE session decrypted it.
const isSimSpeech = (p) => (p.length === 41 || p.length === 33) && p[0] === 0xfc;

// Watch this client's DAVE session (the library's own class, patched to report).
let daveSession = null;
const watch = (name, report) => {
  const original = DAVESession.prototype[name];
  DAVESession.prototype[name] = function (...args) {
    daveSession = this;
    const result = original.apply(this, args);
    report(args, result);
    return result;
  };
};
watch('processWelcome', (_, r) => { if (r.success) emit('welcomed', { id: r.transitionId }); });
watch('processProposals', ([payload]) => emit('proposals', { op: payload.readUInt8(0) === 1 ? 'revoke' : 'append' }));
watch('prepareEpoch', ([data]) => emit('prepare_epoch', { epoch: data.epoch, version: data.protocol_version }));
watch('prepareTransition', ([data]) => emit('prepare_transition', { id: data.transition_id, version: data.protocol_version }));
// `withhold-ready`: from now on, never confirm a transition (op 23) after a commit or
// welcome — a client that hangs; the simulator executes the transition after its timeout.
let withholdReady = false;
for (const name of ['processCommit', 'processWelcome']) {
  const original = DAVESession.prototype[name];
  DAVESession.prototype[name] = function (...args) {
    const result = original.apply(this, args);
    if (!withholdReady || !result.success || result.transitionId === 0) return result;
    emit('withheld', { id: result.transitionId });
    return { ...result, success: false };
  };
}
const daveGroup = () => {
  const s = daveSession?.session;
  if (!s?.ready) return { epoch: null, members: [] };
  return { epoch: Number(s.epoch), members: s.getUserIds().sort() };
};

// A person's client: the control API stands in for Discord's gateway.
async function control(path, body) {
  const r = await fetch(`${SIM_CONTROL}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}),
  });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}
const userAdapter = (methods) => ({
  sendPayload(payload) {
    const channelId = payload.d.channel_id;
    (async () => {
      if (channelId) {
        const grant = await control(`/voice/users/${JUDGE_USER}/client`);
        await control(`/users/${JUDGE_USER}/join`, { channel_id: channelId });
        methods.onVoiceStateUpdate({
          guild_id: GUILD_ID, channel_id: channelId, user_id: JUDGE_USER, session_id: grant.session_id,
          self_deaf: false, self_mute: false,
        });
        methods.onVoiceServerUpdate({ guild_id: GUILD_ID, token: grant.token, endpoint: grant.endpoint });
      } else {
        await control(`/users/${JUDGE_USER}/leave`);
      }
    })().catch((e) => emit('error', { where: 'adapter', message: String(e) }));
    return true;
  },
  destroy() {},
});

const client = JUDGE_USER ? null : new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildVoiceStates],
  rest: { api: SIM_API },
});
client?.on(Events.ShardResume, () => emit('gateway_resumed'));
client?.on(Events.Error, (e) => emit('error', { where: 'client', message: String(e) }));

let connection = null;
const heard = {}; // user id → { frames, speech }
const player = createAudioPlayer({ behaviors: { noSubscriber: NoSubscriberBehavior.Play } });
player.on('error', (e) => emit('error', { where: 'player', message: String(e) }));

function join(channelId) {
  const adapterCreator = JUDGE_USER ? userAdapter : client.guilds.cache.get(GUILD_ID).voiceAdapterCreator;
  connection = joinVoiceChannel({
    channelId, guildId: GUILD_ID, adapterCreator,
    selfDeaf: false, selfMute: false, debug: process.env.JUDGE_DEBUG === '1',
    daveEncryption: process.env.JUDGE_NO_DAVE !== '1',
  });
  connection.on('debug', (m) => process.stderr.write(`[voice] ${m}\n`));
  connection.on('error', (e) => emit('error', { where: 'voice', message: String(e) }));
  connection.on('stateChange', (from, to) => {
    emit('voice_state', { from: from.status, to: to.status });
    if (to.networking && to.networking !== from.networking) {
      to.networking.on('close', (code) => emit('voice_closed', { code }));
    }
    if (to.status === VoiceConnectionStatus.Ready) emit('voice_ready');
  });
  connection.on('transitioned', (id) => emit('transitioned', { id, privacy: connection.voicePrivacyCode }));
  connection.subscribe(player);
}

function play(frames) {
  const packets = [];
  for (let n = 0; n < frames; n++) {
    const p = Buffer.alloc(33);
    p[0] = 0xfc;
    for (let i = 1; i < p.length; i++) p[i] = (i * 13 + n) % 251;
    packets.push(p);
  }
  const resource = createAudioResource(Readable.from(packets), { inputType: StreamType.Opus });
  player.once(AudioPlayerStatus.Idle, () => emit('played', { frames }));
  player.play(resource);
}

function listen(userId) {
  heard[userId] ??= { frames: 0, speech: 0 };
  const stream = connection.receiver.subscribe(userId, { end: { behavior: EndBehaviorType.Manual } });
  stream.on('data', (packet) => {
    heard[userId].frames += 1;
    if (isSimSpeech(packet)) heard[userId].speech += 1;
  });
  emit('listening', { user: userId });
}

async function command(line) {
  const [cmd, arg] = line.trim().split(/\s+/);
  try {
    switch (cmd) {
      case 'join': join(arg); break;
      case 'play': play(Number(arg)); break;
      case 'listen': listen(arg); break;
      case 'withhold-ready': withholdReady = true; emit('withholding'); break;
      case 'report': emit('report', { heard, privacy: connection?.voicePrivacyCode ?? null, ...daveGroup() }); break;
      case 'leave': connection?.destroy(); connection = null; emit('left'); break;
      case 'create': {
        const guild = client.guilds.cache.get(GUILD_ID);
        const c = await guild.channels.create({ name: arg, type: ChannelType.GuildVoice });
        emit('created', { id: c.id });
        break;
      }
      case 'create-many': {
        // Concurrent creations: discord.js must pace them by the bucket it learns.
        const guild = client.guilds.cache.get(GUILD_ID);
        const made = await Promise.all(Array.from({ length: Number(arg) }, (_, i) =>
          guild.channels.create({ name: `judge ${i}`, type: ChannelType.GuildVoice })));
        emit('created-many', { ids: made.map((c) => c.id) });
        break;
      }
      case 'quit': connection?.destroy(); await client?.destroy(); process.exit(0);
      default: emit('error', { where: 'command', message: `unknown command ${line}` });
    }
  } catch (e) {
    emit('error', { where: cmd, message: String(e?.stack ?? e) });
  }
}

const start = () => createInterface({ input: process.stdin }).on('line', (l) => { command(l); });
process.stdin.on('end', () => process.exit(0));
if (JUDGE_USER) {
  emit('ready', { user: JUDGE_USER });
  start();
} else {
  client.once(Events.ClientReady, (c) => {
    emit('ready', { user: c.user.id, guilds: c.guilds.cache.size });
    start();
  });
  await client.login(BOT_TOKEN);
}
