// Numbers and times as the screens print them.

export const count = (n: number): string => n.toLocaleString("en-US");

/** `1 device`, `2,048 devices`. */
export const devices = (n: number): string => `${count(n)} ${n === 1 ? "device" : "devices"}`;

export function percent(part: number, whole: number): string {
  if (whole === 0) return "–";
  return `${Math.round((100 * part) / whole)}%`;
}

/** `2026-04-12 09:15 UTC` from RFC 3339. */
export function when(rfc3339: string | null | undefined): string {
  if (!rfc3339) return "–";
  const t = new Date(rfc3339);
  if (Number.isNaN(t.getTime())) return rfc3339;
  return `${t.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** A phase key as words: `cleaned_up` → `cleaned up`. */
export const phase = (key: string): string => (key === "none" ? "no rollout" : key.replace(/_/g, " "));

/** A release's builds, `23E254, 23E6254`; `–` when the feed gave none. */
export const buildList = (r: { builds: { build: string | null }[] }): string =>
  r.builds.map((b) => b.build).filter((b) => b).join(", ") || "–";

/** The base builds a BSI installs on, `25D2128 or 25D2129`. */
export const prerequisites = (r: { builds: { prerequisiteBuild: string | null }[] }): string =>
  r.builds.map((b) => b.prerequisiteBuild).filter((b) => b).join(" or ");
