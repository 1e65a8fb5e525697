// A third-party Discord client for the simulator's tests: discord.js 14 (gateway, REST) and
// @discordjs/voice 0.19 (voice gateway v8, DAVE through @snazzah/davey). Driven line by line
// on stdin by crates/sim/tests/discordjs_judge.rs; reports JSON events, one per line, on
// stdout. It never reaches anything but the simulator on 127.0.0.1.
//
// Environment: SIM_API (the simulator's `api base`, ".../api"), BOT_TOKEN, GUILD_ID;
// JUDGE_NO_DAVE=1 joins voice without DAVE. Voice TLS trusts the simulator's test CA
// through NODE_EXTRA_CA_CERTS.
//
// Commands:  join <channel id> | play <frames> | listen <user id> | report | leave |
//            create <name> | create-many <n> | quit

import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { Client, Events, GatewayIntentBits, ChannelType } from 'discord.js';
import {
  joinVoiceChannel, VoiceConnectionStatus, createAudioPlayer, createAudioResource, StreamType,
  AudioPlayerStatus, NoSubscriberBehavior, EndBehaviorType,
} from '@discordjs/voice';

const { SIM_API, BOT_TOKEN, GUILD_ID } = process.env;
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

// The simulator's speech frames: TOC 0xFC and 40 bytes (crates/sim/src/voice/speaker.rs).
const isSimSpeech = (p) => p.length === 41 && p[0] === 0xfc;

const client = new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildVoiceStates],
  rest: { api: SIM_API },
});
client.on(Events.ShardResume, () => emit('gateway_resumed'));
client.on(Events.Error, (e) => emit('error', { where: 'client', message: String(e) }));

let connection = null;
const heard = {}; // user id → { frames, speech }
const player = createAudioPlayer({ behaviors: { noSubscriber: NoSubscriberBehavior.Play } });
player.on('error', (e) => emit('error', { where: 'player', message: String(e) }));

function join(channelId) {
  const guild = client.guilds.cache.get(GUILD_ID);
  connection = joinVoiceChannel({
    channelId, guildId: GUILD_ID, adapterCreator: guild.voiceAdapterCreator,
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
      case 'report': emit('report', { heard, privacy: connection?.voicePrivacyCode ?? null }); break;
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
      case 'quit': connection?.destroy(); await client.destroy(); process.exit(0);
      default: emit('error', { where: 'command', message: `unknown command ${line}` });
    }
  } catch (e) {
    emit('error', { where: cmd, message: String(e?.stack ?? e) });
  }
}

client.once(Events.ClientReady, (c) => {
  emit('ready', { user: c.user.id, guilds: c.guilds.cache.size });
  createInterface({ input: process.stdin }).on('line', (l) => { command(l); });
});
process.stdin.on('end', () => process.exit(0));
await client.login(BOT_TOKEN);
