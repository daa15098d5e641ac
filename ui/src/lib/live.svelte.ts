// What every screen watches: the console's clock and a counter that moves when the fleet did.
// Screens reload when `live.version` changes; bursts are coalesced to one reload per second.
import { api, onFleetChanged, onLabFailed, onSyncHealth, type SyncHealth } from "./api";

export const live = $state({
  now: "",
  version: 0,
  labError: "",
  /** The wizard holds the lab's clock while it is open. */
  clockHeld: false,
  health: { lastGood: null, lastFailure: null } as SyncHealth,
});

let pending = false;
let last = 0;

function bump(): void {
  const wait = Math.max(0, 1000 - (Date.now() - last));
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    last = Date.now();
    live.version += 1;
  }, wait);
}

export async function startLive(): Promise<void> {
  await onFleetChanged((now) => {
    live.now = now;
    bump();
  });
  await onLabFailed((message) => {
    live.labError = message;
  });
  await onSyncHealth((health) => {
    live.health = health;
    bump();
  });
  try {
    live.health = await api.syncHealth();
  } catch {
    // The window opened before the shell: the next event brings the health.
  }
}

/** Tells the screens to reload now (after the admin's own action). */
export function refreshNow(): void {
  last = 0;
  bump();
}
