// How a device's timeline reads: a label per event kind, and which events are trouble.
import type { TimelineEntry } from "./api";

const LABELS: Record<string, string> = {
  enrolled: "Enrolled",
  declaration_assigned: "Declaration assigned",
  push_sent: "Push sent",
  push_failed: "Push failed",
  declaration_active: "Declaration active",
  declaration_invalid: "Declaration rejected",
  install_state: "Install state",
  install_failed: "Install failed",
  bootstrap_token_requested: "Bootstrap token fetched",
  os_updated: "OS updated",
  declaration_unassigned: "Declaration unassigned",
  declaration_removed: "Declaration removed",
  past_deadline: "Deadline passed",
  stale: "No status report",
  stuck: "Stuck",
  retry: "Retried",
  excluded: "Excluded",
  cancelled: "Cancelled",
  push_certificate_expiring: "Push certificate expiring",
};

/** A person's name for an event kind; unknown kinds read as their words. */
export function label(kind: string): string {
  return LABELS[kind] ?? kind.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

/** `trouble`, `done` or `info`, for the marker's colour. */
export function tone(entry: Pick<TimelineEntry, "kind" | "detail">): "trouble" | "done" | "info" {
  if (["install_failed", "declaration_invalid", "past_deadline", "stale", "stuck", "push_failed", "push_certificate_expiring"].includes(entry.kind)) {
    return "trouble";
  }
  if (entry.kind === "install_state" && entry.detail === "failed") return "trouble";
  if (["os_updated", "declaration_removed"].includes(entry.kind)) return "done";
  return "info";
}

/** The time from the first event to the last, in words. */
export function span(entries: TimelineEntry[]): string | null {
  if (entries.length < 2) return null;
  const first = Date.parse(entries[0].at);
  const last = Date.parse(entries[entries.length - 1].at);
  if (Number.isNaN(first) || Number.isNaN(last)) return null;
  return duration(last - first);
}

/** "3 d 4 h", "2 h 15 min", "40 s". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d > 0) return h > 0 ? `${d} d ${h} h` : `${d} d`;
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`;
  if (m > 0) return `${m} min`;
  return `${s} s`;
}
