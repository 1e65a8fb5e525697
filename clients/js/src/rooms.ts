// The live room list: the snapshot (`GET /api/rooms`) plus every event after it,
// applied with the lobby's rules (docs/lobby.md "Live"): idempotent (a join of
// someone already there or a leave of someone absent changes nothing), a join
// removes the user from any other room, a `voice.state` for a user not yet seen in
// that room moves them there, unknown events change nothing. The list it hands out
// is immutable and keeps its identity until something changes (React's
// `useSyncExternalStore` relies on that).
import type { EventPayloads, Snapshot, SnapshotMember, VoiceFlags } from './contract.js';

/** A member of a live room: the snapshot's fields, the flags, and whether they speak now. */
export interface LiveMember extends SnapshotMember {
  /** `voice.speaking` said so (the bot hears them). */
  readonly speaking: boolean;
}

/** A live room. */
export interface LiveRoom {
  /** The voice channel id. */
  readonly channelId: string;
  /** Its name. */
  readonly name: string;
  /** Its category, or `null`. */
  readonly parentId: string | null;
  /** Seats, 0 = unlimited. */
  readonly userLimit: number;
  /** Who is in it, in order of arrival. */
  readonly members: readonly LiveMember[];
}

const FLAGS: readonly (keyof VoiceFlags)[] = ['selfMute', 'selfDeaf', 'mute', 'deaf', 'selfVideo', 'selfStream', 'suppress'];

interface RoomState {
  channelId: string;
  name: string;
  parentId: string | null;
  userLimit: number;
  members: Map<string, LiveMember>;
}

function newMember(userId: string): LiveMember {
  return {
    userId, name: null, avatarUrl: null, speaking: false,
    selfMute: false, selfDeaf: false, mute: false, deaf: false, selfVideo: false, selfStream: false, suppress: false,
  };
}

/** Rooms and members built from a snapshot and the events after it. */
export class LiveRooms {
  private rooms = new Map<string, RoomState>();
  /** Names and avatars learnt from snapshots, kept across a leave and a join. */
  private readonly people = new Map<string, { name: string | null; avatarUrl: string | null }>();
  private cached: readonly LiveRoom[] | null = null;

  /** Replaces everything with `snapshot`. */
  reset(snapshot: Snapshot): void {
    this.rooms = new Map();
    for (const room of snapshot.rooms) {
      const members = new Map<string, LiveMember>();
      for (const m of room.members) {
        this.learn(m);
        members.set(m.userId, { ...m, speaking: false });
      }
      this.rooms.set(room.channelId, {
        channelId: room.channelId, name: room.name, parentId: room.parentId, userLimit: room.userLimit, members,
      });
    }
    this.cached = null;
  }

  /** Learns names and avatars from a fresh snapshot without touching membership; true when one changed. */
  learnNames(snapshot: Snapshot): boolean {
    let changed = false;
    for (const room of snapshot.rooms) for (const m of room.members) this.learn(m);
    for (const room of this.rooms.values()) {
      for (const [id, m] of room.members) {
        const p = this.people.get(id);
        if (p && (p.name !== m.name || p.avatarUrl !== m.avatarUrl)) {
          room.members.set(id, { ...m, name: p.name, avatarUrl: p.avatarUrl });
          changed = true;
        }
      }
    }
    if (changed) this.cached = null;
    return changed;
  }

  /** Whether a snapshot gave `userId` a name (a join of someone never seen has none yet). */
  hasName(userId: string): boolean {
    return !!this.people.get(userId)?.name;
  }

  /** The rooms, ordered by channel id; the same array until something changes. */
  list(): readonly LiveRoom[] {
    if (!this.cached) {
      this.cached = Object.freeze(
        [...this.rooms.values()]
          .sort((a, b) => compareIds(a.channelId, b.channelId))
          .map((r) => Object.freeze({
            channelId: r.channelId, name: r.name, parentId: r.parentId, userLimit: r.userLimit,
            members: Object.freeze([...r.members.values()]),
          })),
      );
    }
    return this.cached;
  }

  /** Applies one event; returns whether the rooms changed. Unknown names change nothing. */
  apply(name: string, payload: unknown): boolean {
    const changed = this.applyInner(name, payload as Record<string, unknown>);
    if (changed) this.cached = null;
    return changed;
  }

  private learn(m: SnapshotMember): void {
    const prev = this.people.get(m.userId);
    this.people.set(m.userId, { name: m.name ?? prev?.name ?? null, avatarUrl: m.avatarUrl ?? prev?.avatarUrl ?? null });
  }

  private member(userId: string): LiveMember {
    const p = this.people.get(userId);
    const m = newMember(userId);
    return p ? { ...m, name: p.name, avatarUrl: p.avatarUrl } : m;
  }

  private applyInner(name: string, p: Record<string, unknown> | null): boolean {
    if (!p || typeof p !== 'object') return false;
    const cid = typeof p.channelId === 'string' ? p.channelId : null;
    const uid = typeof p.userId === 'string' ? p.userId : null;
    if (!cid) return false;
    switch (name) {
      case 'room.created': {
        const e = p as unknown as EventPayloads['room.created'];
        const room = this.rooms.get(cid);
        if (room) {
          room.name = e.name;
          room.parentId = e.parentId;
          room.userLimit = e.userLimit;
        } else {
          this.rooms.set(cid, { channelId: cid, name: e.name, parentId: e.parentId, userLimit: e.userLimit, members: new Map() });
        }
        return true;
      }
      case 'room.deleted':
        return this.rooms.delete(cid);
      case 'voice.joined': {
        if (!uid) return false;
        let changed = false;
        for (const room of this.rooms.values()) {
          if (room.channelId !== cid && room.members.delete(uid)) changed = true;
        }
        const room = this.rooms.get(cid);
        if (room && !room.members.has(uid)) {
          room.members.set(uid, this.member(uid));
          changed = true;
        }
        return changed;
      }
      case 'voice.left': {
        if (!uid) return false;
        return this.rooms.get(cid)?.members.delete(uid) ?? false;
      }
      case 'voice.state': {
        if (!uid) return false;
        const room = this.rooms.get(cid);
        if (!room) return false;
        let m = room.members.get(uid);
        if (!m) {
          for (const other of this.rooms.values()) other.members.delete(uid);
          m = this.member(uid);
        }
        const next: Record<string, unknown> = { ...m };
        for (const f of FLAGS) if (typeof p[f] === 'boolean') next[f] = p[f];
        room.members.set(uid, next as unknown as LiveMember);
        return true;
      }
      case 'voice.speaking': {
        if (!uid) return false;
        const room = this.rooms.get(cid);
        const m = room?.members.get(uid);
        const speaking = p.speaking === true;
        if (!room || !m || m.speaking === speaking) return false;
        room.members.set(uid, { ...m, speaking });
        return true;
      }
      default:
        return false; // unknown events are ignored (docs/spec.md §4)
    }
  }
}

/** Orders decimal ids numerically without losing precision. */
function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
