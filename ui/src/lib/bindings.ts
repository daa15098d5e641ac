// Generated from the Rust types by src-tauri/src/bindings.rs: do not edit.
// UPDRAFT_BLESS=1 cargo test -p updraft-desktop bindings rewrites it.

export type EventKind = "enrolled" | "planned" | "excluded" | "declaration_assigned" | "declaration_unassigned" | "push_sent" | "push_failed" | "rollout_cancelled" | "retry" | "bootstrap_token_requested" | "declaration_removed" | "declaration_invalid" | "declaration_active" | "os_updated" | "install_state" | "install_failed" | "past_deadline" | "stale" | "stuck";
export type AlertKind = "install_failed" | "declaration_invalid" | "past_deadline" | "device_stuck" | "device_stale" | "bootstrap_token_missing" | "push_certificate_expiring" | "push_failed" | "new_release" | "rollout_halted" | "rollout_drafted";
export type OsCount = {
  /** `macOS`, `iOS`. */
  platform: string,
  /** `26.3`. */
  version: string,
  /** Devices. */
  count: number,
};
export type Compliance = {
  /** Platform. */
  platform: string,
  /** Newest release offered today (not a BSI), with its build. */
  newest: string,
  /** Devices at or above it. */
  current: number,
  /** Devices of the platform. */
  devices: number,
};
export type ReleaseBanner = {
  /** Catalog key, for the wizard. */
  release: string,
  /** Platform. */
  platform: string,
  /** Version and build. */
  label: string,
  /** Days since posting. */
  daysAgo: number,
  /** Devices it applies to. */
  appliesTo: number,
};
export type RolloutStatus = "active" | "complete" | "paused" | "cancelled" | "gated" | "halted";
export type RolloutSummary = {
  /** Id. */
  id: number,
  /** The ring it rolls out to, when it is one of a ring plan. */
  ring: string | null,
  /** Wave. */
  wave: number,
  /** Platform. */
  platform: string,
  /** Release. */
  label: string,
  /** Local deadline. */
  deadline: string,
  /** Where it stands. */
  state: RolloutStatus,
  /** Devices with a record (including excluded). */
  total: number,
  /** Updated (and cleaned up, or being cleaned up). */
  updated: number,
  /** Failed or declaration invalid. */
  failed: number,
  /** Excluded. */
  excluded: number,
  /** Still in progress. */
  inProgress: number,
  /** For a wave behind a gate: what it waits for, or why it halted. */
  gate: string | null,
};
export type AlertView = {
  /** Id. */
  id: number,
  /** When (simulated in the lab). */
  at: string,
  /** Kind. */
  kind: AlertKind,
  /** Device enrollment id. */
  device: string | null,
  /** Device name. */
  deviceName: string | null,
  /** Rollout. */
  rollout: number | null,
  /** Detail. */
  detail: string,
};
export type Dashboard = {
  /** The console's clock. */
  now: string,
  /** Whether this is the lab. */
  lab: boolean,
  /** Devices known. */
  devices: number,
  /** Fleet by OS version. */
  byOs: Array<OsCount>,
  /** Share on the newest release, per platform. */
  compliance: Array<Compliance>,
  /** New releases that apply to devices not yet in a rollout of them. */
  banners: Array<ReleaseBanner>,
  /** Rollouts not cancelled, newest first. */
  rollouts: Array<RolloutSummary>,
  /** Newest alerts. */
  alerts: Array<AlertView>,
  /** Rollouts release policies drafted, waiting for an admin. */
  drafts: Array<DraftView>,
};
export type ReleaseBuildView = {
  /** The build. */
  build: string | null,
  /** For a BSI, the base build it installs on. */
  prerequisiteBuild: string | null,
  /** How many device ids this build lists. */
  supportedDeviceIds: number,
};
export type ReleaseView = {
  /** Catalog key. */
  key: string,
  /** Platform. */
  platform: string,
  /** `26.3.1`. */
  version: string,
  /** `(a)` for a BSI. */
  extra: string | null,
  /** Its builds: a release is one version, which the feed may list under several builds. */
  builds: Array<ReleaseBuildView>,
  /** `PostingDate`. */
  posted: string,
  /** `ExpirationDate`. */
  expires: string | null,
  /** Offered on the console's date. */
  available: boolean,
  /** Only in `AssetSets`. */
  managementOnly: boolean,
  /** Devices ids it lists. */
  supportedDeviceIds: number,
  /** Devices it applies to (not yet on it, eligible). */
  appliesTo: number,
  /** Devices of the platform already at or above it. */
  current: number,
  /** The CVEs it fixes, by SOFA; none when SOFA does not list it or disagrees with Apple. */
  cves: number | null,
  /** Those actively exploited. */
  exploited: Array<string>,
  /** Apple's security note. */
  securityInfo: string | null,
  /** How SOFA's entry disagrees with the lookup service, shown instead of its counts. */
  sofaMismatch: string | null,
};
export type DeviceRow = {
  /** Enrollment id. */
  id: string,
  /** Name. */
  name: string,
  /** Serial number. */
  serial: string,
  /** Model identifier. */
  model: string,
  /** Platform. */
  platform: string,
  /** OS version, with the supplemental letter when there is one. */
  os: string,
  /** Build. */
  build: string,
  /** Phase in its newest rollout, or `none`. */
  state: string,
  /** Its newest rollout. */
  rollout: number | null,
  /** Last status report. */
  lastReport: string | null,
};
export type DeviceQuery = {
  /** Part of the name, serial number or enrollment id, any case. */
  search: string,
  /** Model identifier. */
  model: string | null,
  /** OS version. */
  os: string | null,
  /** Phase. */
  state: string | null,
  /** Rollout. */
  rollout: number | null,
  /** `name`, `serial`, `model`, `os`, `state`, `lastReport`. */
  sort: string | null,
  /** Sort descending. */
  descending: boolean,
  /** First row. */
  offset: number,
  /** Rows wanted (at most 1,000). */
  limit: number,
};
export type DevicePage = {
  /** Rows matching the filters. */
  total: number,
  /** The window's first row. */
  offset: number,
  /** The rows. */
  rows: Array<DeviceRow>,
};
export type DeviceFacets = {
  /** Model identifiers. */
  models: Array<string>,
  /** OS versions. */
  os: Array<string>,
  /** Phases. */
  states: Array<string>,
  /** Rollouts. */
  rollouts: Array<number>,
};
export type Tone = "trouble" | "done" | "info";
export type TimelineEntry = {
  /** When. */
  at: string,
  /** Kind. */
  kind: EventKind,
  /** Detail. */
  detail: string,
  /** How the entry's marker reads. */
  tone: Tone,
  /** Rollout. */
  rollout: number | null,
  /** "2 h 15 min" since the previous entry. */
  sincePrevious: string | null,
};
export type DeviceEnforcement = {
  /** Rollout. */
  rollout: number,
  /** Target. */
  target: string,
  /** Phase. */
  phase: string,
  /** Local deadline. */
  deadline: string,
  /** The declaration. */
  declaration: string,
  /** Apple's failure reason. */
  failureReason: string | null,
  /** Failures so far. */
  failureCount: number,
  /** Why excluded. */
  exclusionReason: string | null,
  /** Why the device rejected the declaration. */
  invalidReason: string | null,
  /** Deadline passed, not updated. */
  pastDeadline: boolean,
  /** No report for too long. */
  stale: boolean,
  /** Downloading or installing for too long. */
  stuck: boolean,
};
export type DeviceDetail = {
  /** The row. */
  row: DeviceRow,
  /** Model family. */
  family: string | null,
  /** SoftwareUpdateDeviceID, and whether it was reported or derived from the model. */
  deviceId: string | null,
  /** `reported` or `derived from model`. */
  deviceIdSource: string | null,
  /** Supplemental (BSI) build. */
  supplementalBuild: string | null,
  /** IANA time zone. */
  timeZone: string | null,
  /** Bootstrap token escrowed. */
  bootstrapTokenEscrowed: boolean,
  /** Last bootstrap token fetch. */
  bootstrapTokenRequestedAt: string | null,
  /** Enforcement declarations assigned now. */
  declarationsAssigned: Array<string>,
  /** Its rollouts. */
  enforcements: Array<DeviceEnforcement>,
  /** Every event, oldest first. */
  timeline: Array<TimelineEntry>,
  /** From the first event to the last, in words (`3 d 4 h`); none with fewer than two. */
  timelineSpan: string | null,
  /** What keeps it out of every rollout, when an admin holds it back and the hold has not ended (`on hold until 2026-12-05 00:00 UTC: on stage Friday`). */
  hold: string | null,
  /** The prompts the device's user is expected to see before a deadline still ahead (Apple's phase 4: no report tells them, so they are expected, never observed), oldest first. */
  expectedPrompts: Array<ExpectedPromptView>,
};
export type FunnelStep = {
  /** Phase. */
  phase: string,
  /** Devices in it now. */
  count: number,
};
export type FailureGroup = {
  /** Apple's reason (or the console's, for a silent device). */
  reason: string,
  /** Devices. */
  devices: Array<string>,
};
export type RolloutDetail = {
  /** The summary. */
  summary: RolloutSummary,
  /** DetailsURL. */
  detailsUrl: string | null,
  /** Whether it covers chosen devices only. */
  scoped: boolean,
  /** Devices per phase, in the order devices move. */
  funnel: Array<FunnelStep>,
  /** Failures by reason. */
  failures: Array<FailureGroup>,
  /** Exclusions by reason. */
  exclusions: Array<FailureGroup>,
};
export type AuditView = {
  /** When. */
  at: string,
  /** Who. */
  actor: string,
  /** What. */
  action: string,
  /** On what. */
  detail: string,
};
export type Weekends = "allowed" | "next_monday" | "friday_before";
export type PolicyAction = "draft" | "start";
export type DraftState = "drafted" | "started" | "dismissed";
export type Lag = "on_hold" | "failed" | "excluded" | "silent" | "past_deadline" | "in_progress" | "ring_waiting" | "not_in_rollout";
export type MembershipKind = "share" | "filter" | "devices" | "rest";
export type RingView = {
  /** `IT`, `Pilot`, `Everyone`. */
  name: string,
  /** How it takes devices; the fields below that the kind uses are set. */
  kind: MembershipKind,
  /** Share: percent of the fleet, 1 to 100. */
  sharePercent: number | null,
  /** Filter: `macOS` or `iOS`. */
  filterPlatform: string | null,
  /** Filter: model pattern (`Mac14,*`). */
  filterModel: string | null,
  /** Filter: OS version pattern (`15.*`). */
  filterOs: string | null,
  /** Filter: name pattern (`IT-*`). */
  filterName: string | null,
  /** Filter: serial pattern. */
  filterSerial: string | null,
  /** Devices: enrollment ids. */
  devices: Array<string>,
  /** Days after the rollout's base date. */
  offsetDays: number,
  /** `17:00`, on each device's clock. */
  timeOfDay: string,
};
export type RingPlanView = {
  /** Its name, unique. */
  name: string,
  /** In the order they start. */
  rings: Array<RingView>,
  /** Where weekend deadlines go. */
  weekends: Weekends,
  /** Deadlines only from this time (`18:00`)... */
  afterHoursStart: string | null,
  /** ...to this one (`07:00`), when both are set. */
  afterHoursEnd: string | null,
  /** The gate: at least this percent of the ring before updated. */
  minUpdatedPercent: number,
  /** More than this percent failed halts the rollout. */
  maxFailedPercent: number,
  /** More failures than this within an hour halts it too. */
  maxFailuresPerHour: number | null,
  /** Release policies that use it (it cannot be deleted while any does). */
  usedBy: Array<string>,
};
export type PolicyView = {
  /** `macOS` or `iOS`. */
  platform: string,
  /** The saved ring plan its rollouts take. */
  plan: string,
  /** The base date: this many days after the release's posting date. */
  baseDelayDays: number,
  /** Draft for an admin, or start at once. */
  action: PolicyAction,
  /** Offsets shortened to this percent when the release fixes an actively exploited CVE. */
  exploitedPercent: number | null,
  /** Releases posted before this day (`YYYY-MM-DD`) are left alone. */
  since: string,
};
export type PinView = {
  /** Its name, unique (`Audio studio`). */
  name: string,
  /** Filter: `macOS` or `iOS`. */
  filterPlatform: string | null,
  /** Filter: model pattern. */
  filterModel: string | null,
  /** Filter: OS version pattern. */
  filterOs: string | null,
  /** Filter: name pattern (`STUDIO-*`). */
  filterName: string | null,
  /** Filter: serial pattern. */
  filterSerial: string | null,
  /** Majors behind the newest the feed lists (1: N-1). */
  majorsBehind: number,
};
export type DraftRingView = {
  /** The ring. */
  name: string,
  /** Devices of the platform it takes today (devices on hold are left out). */
  devices: number,
  /** Its deadline on each device's clock, `YYYY-MM-DDTHH:MM`. */
  deadline: string,
};
export type DraftView = {
  /** Id. */
  id: number,
  /** Catalog key of the release, for the wizard. */
  release: string,
  /** `macOS 26.4.1 (25E253)`. */
  label: string,
  /** When the lookup service posted it. */
  posted: string,
  /** The ring plan. */
  plan: string,
  /** The base date, `YYYY-MM-DD`. */
  baseDate: string,
  /** Offsets shortened to this percent, for an exploited vulnerability. */
  shortenedTo: number | null,
  /** The actively exploited CVEs it fixes. */
  exploited: Array<string>,
  /** Waiting, started or dismissed. */
  state: DraftState,
  /** Its rings as they stand today (empty when its plan is gone). */
  rings: Array<DraftRingView>,
  /** "each ring waits for 90% updated of the one before; more than 5% failed halts". */
  gate: string,
  /** When the policy drafted it. */
  draftedAt: string,
};
export type ComplianceSeriesView = {
  /** `All`, or the ring's name (`not in a rollout` for devices no rollout covers). */
  ring: string,
  /** Its devices. */
  devices: number,
  /** Percent on the release or newer by the end of day 0 (the posting date), 1, 2... */
  percent: Array<number>,
};
export type LagCount = {
  /** The reason. */
  lag: Lag,
  /** Devices. */
  devices: number,
};
export type LaggingDevice = {
  /** Enrollment id. */
  id: string,
  /** Name. */
  name: string | null,
  /** Its ring. */
  ring: string,
  /** The OS it reports. */
  os: string,
  /** Why it lags. */
  lag: Lag,
  /** Apple's failure reason, the exclusion reason, the hold's reason, or its last report. */
  detail: string,
};
export type ComplianceReport = {
  /** Catalog key. */
  release: string,
  /** `macOS 26.4.1 (25E253)`. */
  label: string,
  /** Posting date. */
  posted: string,
  /** Days since posting the curves run to (today, at most 90). */
  days: number,
  /** The whole platform first, then each ring. */
  series: Array<ComplianceSeriesView>,
  /** Devices not on it, by reason. */
  lags: Array<LagCount>,
  /** The first of them, sorted by reason then name. */
  lagging: Array<LaggingDevice>,
  /** How many lag in all. */
  laggingTotal: number,
};
export type Selection = { "mode": "all" } | { "mode": "models", "values": Array<string> } | { "mode": "osVersions", "values": Array<string> } | { "mode": "devices", "values": Array<string>
};
export type WavePlan = {
  /** Percent of the chosen devices, 1 to 100; the waves' shares add up to 100. */
  percent: number,
  /** The deadline on each device's own clock, `YYYY-MM-DDTHH:MM` (seconds allowed). */
  deadline: string,
};
export type RolloutPlan = {
  /** The release's catalog key. */
  release: string,
  /** The devices. */
  selection: Selection,
  /** One to five waves. */
  waves: Array<WavePlan>,
  /** Optional https page the device links to. */
  detailsUrl: string | null,
  /** Each wave after the first starts only when the wave before passes this gate; without it, every wave starts at once. */
  gate?: GatePlan,
};
export type GatePlan = {
  /** At least this share updated (90 by default). */
  minUpdatedPercent: number,
  /** More than this share failed halts the waves after it (5 by default). */
  maxFailedPercent: number,
};
export type ExpectedPromptView = {
  /** On the device's clock, `2026-12-07 16:00`. */
  at: string,
  /** `daily`, `hourly`, `30 and 10 minutes before`, `at the deadline`. */
  cadence: string,
  /** The rollout whose deadline it announces. */
  rollout: number,
};
export type PreviewDevice = {
  /** Enrollment id. */
  id: string,
  /** Display name. */
  name: string,
  /** Model identifier. */
  model: string,
  /** Current OS. */
  os: string,
  /** Wave number, from 1; none when excluded. */
  wave: number | null,
  /** The deadline on the device's clock, with its zone. */
  localDeadline: string | null,
  /** Why it is left out. */
  exclusion: string | null,
  /** What the admin should know. */
  warnings: Array<string>,
};
export type PreviewWave = {
  /** Wave number, from 1. */
  wave: number,
  /** Its deadline, local to each device. */
  deadline: string,
  /** How many devices it covers. */
  devices: number,
  /** Warnings about the deadline. */
  warnings: Array<string>,
};
export type Preview = {
  /** Problems that forbid confirming (empty when the plan can start). */
  errors: Array<string>,
  /** The waves. */
  waves: Array<PreviewWave>,
  /** Devices included. */
  included: number,
  /** Devices of the platform left out (with reasons). */
  excluded: number,
  /** Included devices with at least one warning. */
  warned: number,
  /** Every device of the release's platform the selection touched, included ones first. */
  devices: Array<PreviewDevice>,
};
export type Preset = "nanoHub" | "kmfddm" | "updraft";
export type StatusChoice = { "source": "serverFeed" } | { "source": "companion",
  /** The companion's address. */
  url: string, } | { "source": "polling",
  /** The list as imported (CSV: id, name, time zone; or ids one a line). */
  enrollments: string,
  /** Minutes between polls. */
  everyMinutes: number,
};
export type ServerSettings = {
  /** Its address, e.g. `https://mdm.example.com/`. */
  url: string,
  /** What kind of server: its API prefix and user unless overridden. */
  preset: Preset,
  /** The admin API's prefix, when not the preset's. */
  apiPrefix?: string | null,
  /** The HTTP Basic user, when not the preset's. */
  apiUser?: string | null,
  /** A private CA (PEM) for a server whose TLS chain ends in one (public data, kept here). */
  caPem?: string | null,
  /** Where the console reads devices' status. */
  status: StatusChoice,
};
export type SettingsView = {
  /** `lab` or `server`: what the settings ask for. */
  backend: string,
  /** The server, when one is chosen. */
  server: ServerSettings | null,
  /** Whether the keychain holds an API key for it. */
  apiKeyStored: boolean,
  /** What runs now (a change takes effect at the next start). */
  running: string,
  /** Where the desktop app writes its log. */
  logFile: string | null,
};
export type CheckLine = {
  /** What was tried: "address", "admin API", "status". */
  what: string,
  /** Whether it works. */
  ok: boolean,
  /** What was found, in words an admin can act on. */
  detail: string,
};
export type ServerTried = {
  /** The settings as they are now. */
  view: SettingsView,
  /** Each check and what came of it. */
  checks: Array<CheckLine>,
};
export type ClockView = {
  /** The console's clock, RFC 3339. */
  now: string,
  /** Simulated minutes per real second; 0 when stopped. */
  speed: number,
  /** Whether this is the lab (only its clock can be moved). */
  lab: boolean,
  /** Held by the rollout wizard: the clock stands still whatever its speed. */
  held: boolean,
};
export type ErrorCode = "not_found" | "invalid" | "backend" | "starting";
export type BackendError = {
  /** What kind of failure, for the UI to tell apart. */
  code: ErrorCode,
  /** What went wrong, for a person. */
  message: string,
};
export type SyncHealth = {
  /** The last sync that worked, RFC 3339. */
  lastGood: string | null,
  /** The last sync that failed, RFC 3339, and why; cleared by the next good one. */
  lastFailure: SyncFailure | null,
};
export type SyncFailure = {
  /** When, RFC 3339. */
  at: string,
  /** Why, as the backend said it. */
  reason: string,
};

/** The most waves a rollout has. */
export const MAX_WAVES = 5;
/** The longest DetailsURL the wizard takes. */
export const MAX_DETAILS_URL = 2048;
/** The most rows one devices-table query returns. */
export const MAX_DEVICE_ROWS = 1000;
/** The lab clock's speeds, in simulated minutes per second (0: stopped). */
export const LAB_SPEEDS = [0, 15, 60, 360, 1440];
/** The most rings a ring plan has. */
export const MAX_RINGS = 10;
