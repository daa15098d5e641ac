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
