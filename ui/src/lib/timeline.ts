// How a device's timeline and the alert list read: a label per kind (the tables name every kind
// the Rust enums have, or the type check fails). Which entries are trouble comes with each entry.
import type { AlertKind, EventKind } from "./api";

const EVENT_LABELS: Record<EventKind, string> = {
  enrolled: "Enrolled",
  planned: "Planned",
  excluded: "Excluded",
  declaration_assigned: "Declaration assigned",
  declaration_unassigned: "Declaration unassigned",
  push_sent: "Push sent",
  push_failed: "Push failed",
  rollout_cancelled: "Rollout cancelled",
  retry: "Retried",
  bootstrap_token_requested: "Bootstrap token fetched",
  declaration_removed: "Declaration removed",
  declaration_invalid: "Declaration rejected",
  declaration_active: "Declaration active",
  os_updated: "OS updated",
  install_state: "Install state",
  install_failed: "Install failed",
  past_deadline: "Deadline passed",
  stale: "No status report",
  stuck: "Stuck",
};

const ALERT_LABELS: Record<AlertKind, string> = {
  install_failed: "install failed",
  declaration_invalid: "declaration rejected",
  past_deadline: "deadline passed",
  device_stuck: "stuck",
  device_stale: "no status report",
  bootstrap_token_missing: "no bootstrap token",
  push_certificate_expiring: "push certificate expiring",
  push_failed: "push failed",
  new_release: "new release",
  rollout_halted: "rollout halted",
  rollout_drafted: "rollout drafted by policy",
};

/** A person's name for a timeline entry's kind. */
export const label = (kind: EventKind): string => EVENT_LABELS[kind];

/** A person's name for an alert's kind. */
export const alertLabel = (kind: AlertKind): string => ALERT_LABELS[kind];
