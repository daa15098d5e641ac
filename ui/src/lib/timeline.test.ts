import { describe, expect, it } from "vitest";
import { alertLabel, label, tone } from "./timeline";

describe("timeline", () => {
  it("names event and alert kinds for people", () => {
    expect(label("declaration_assigned")).toBe("Declaration assigned");
    expect(label("bootstrap_token_requested")).toBe("Bootstrap token fetched");
    expect(label("rollout_cancelled")).toBe("Rollout cancelled");
    expect(alertLabel("device_stale")).toBe("no status report");
    expect(alertLabel("new_release")).toBe("new release");
  });
  it("marks failures as trouble and the update as done", () => {
    expect(tone({ kind: "install_failed", detail: "SoftwareUpdateFailureReasonDiskSpace" })).toBe("trouble");
    expect(tone({ kind: "install_state", detail: "failed" })).toBe("trouble");
    expect(tone({ kind: "install_state", detail: "downloading" })).toBe("info");
    expect(tone({ kind: "os_updated", detail: "26.4.1 (25E253)" })).toBe("done");
  });
});
