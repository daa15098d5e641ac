import { describe, expect, it } from "vitest";
import { label, tone } from "./timeline";

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
});
