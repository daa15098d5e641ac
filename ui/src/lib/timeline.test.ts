import { describe, expect, it } from "vitest";
import { duration, label, span, tone } from "./timeline";

describe("timeline", () => {
  it("names event kinds for people, and unknown kinds by their words", () => {
    expect(label("declaration_assigned")).toBe("Declaration assigned");
    expect(label("bootstrap_token_requested")).toBe("Bootstrap token fetched");
    expect(label("something_new")).toBe("Something new");
  });
  it("marks failures as trouble and the update as done", () => {
    expect(tone({ kind: "install_failed", detail: "SoftwareUpdateFailureReasonDiskSpace" })).toBe("trouble");
    expect(tone({ kind: "install_state", detail: "failed" })).toBe("trouble");
    expect(tone({ kind: "install_state", detail: "downloading" })).toBe("info");
    expect(tone({ kind: "os_updated", detail: "26.4.1 (25E253)" })).toBe("done");
  });
  it("spans the first to the last event", () => {
    const at = (t: string) => ({ at: t, kind: "x", detail: "", rollout: null, sincePrevious: null });
    expect(span([at("2026-04-12T09:00:00Z"), at("2026-04-15T13:30:00Z")])).toBe("3 d 4 h");
    expect(span([at("2026-04-12T09:00:00Z")])).toBeNull();
  });
  it("says durations the way the backend does", () => {
    expect(duration(40_000)).toBe("40 s");
    expect(duration(135 * 60_000)).toBe("2 h 15 min");
    expect(duration(48 * 3600_000)).toBe("2 d");
  });
});
