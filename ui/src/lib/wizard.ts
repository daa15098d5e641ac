// The wizard's rules as the form applies them while the admin types. The backend applies the
// same rules again in its preview and before it starts anything (crates/app/src/wizard.rs).
import type { WavePlan } from "./api";
import { MAX_DETAILS_URL, MAX_WAVES } from "./bindings";

export { MAX_WAVES };

/** Parses `YYYY-MM-DDTHH:MM` as a wall-clock time (no zone: it is read on each device). */
export function parseLocal(text: string): { date: Date; weekday: number } | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(text.trim());
  if (!match) return null;
  const [year, month, day, hour, minute, second] = match.slice(1).map((p) => Number(p ?? 0));
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return null;
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (date.getUTCDate() !== day) return null; // 2026-02-30
  return { date, weekday: date.getUTCDay() };
}

/** Problems that forbid going on. */
export function waveErrors(waves: WavePlan[]): string[] {
  const errors: string[] = [];
  if (waves.length < 1 || waves.length > MAX_WAVES) {
    errors.push(`a rollout has one to ${MAX_WAVES} waves`);
  }
  const total = waves.reduce((sum, w) => sum + w.percent, 0);
  if (waves.some((w) => !Number.isInteger(w.percent) || w.percent <= 0) || total !== 100) {
    errors.push(`the waves' shares must each be above 0 and add up to 100%, not ${total}%`);
  }
  waves.forEach((w, i) => {
    if (!parseLocal(w.deadline)) errors.push(`wave ${i + 1}: the deadline is not a date and time`);
  });
  return errors;
}

/**
 * Warnings about deadlines. `now` is the console's clock: a deadline earlier than it has
 * passed on every device, whatever its zone (give or take the day's offsets, which the
 * backend's preview checks device by device).
 */
export function waveWarnings(waves: WavePlan[], now: Date): string[] {
  const warnings: string[] = [];
  let previous: Date | null = null;
  waves.forEach((w, i) => {
    const parsed = parseLocal(w.deadline);
    if (!parsed) return;
    if (parsed.weekday === 0 || parsed.weekday === 6) {
      warnings.push(`wave ${i + 1}: the deadline falls on a ${parsed.weekday === 0 ? "Sunday" : "Saturday"}`);
    }
    // A wall-clock deadline 14 hours before now (UTC) has passed in every zone.
    if (parsed.date.getTime() < now.getTime() - 14 * 3600_000) {
      warnings.push(`wave ${i + 1}: the deadline is in the past: devices will install within the hour`);
    } else if (parsed.date.getTime() < now.getTime() + 12 * 3600_000) {
      warnings.push(`wave ${i + 1}: the deadline may already have passed on some devices' clocks`);
    }
    if (previous && parsed.date < previous) warnings.push(`wave ${i + 1} is due before wave ${i}`);
    previous = parsed.date;
  });
  return warnings;
}

/** `null` when acceptable (empty is fine: the field is optional), else why not. */
export function detailsUrlError(text: string): string | null {
  const value = text.trim();
  if (value === "") return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "DetailsURL is not a web address";
  }
  if (url.protocol !== "https:") return "DetailsURL must start with https://";
  if (!url.hostname) return "DetailsURL needs a host";
  if (url.username || url.password) return "DetailsURL must not carry a user name or password";
  if (value.length > MAX_DETAILS_URL) return `DetailsURL is longer than ${MAX_DETAILS_URL.toLocaleString("en-US")} characters`;
  return null;
}

/** Shares for `count` waves, as even as whole percents allow, the first waves smallest. */
export function evenShares(count: number): number[] {
  const n = Math.max(1, Math.min(MAX_WAVES, count));
  const base = Math.floor(100 / n);
  const shares = Array.from({ length: n }, () => base);
  shares[n - 1] += 100 - base * n;
  return shares;
}

/** A default deadline: `days` from `now` at 17:00, moved off a weekend. */
export function defaultDeadline(now: Date, days: number): string {
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + days, 17, 0));
  while (d.getUTCDay() === 0 || d.getUTCDay() === 6) d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 16);
}
