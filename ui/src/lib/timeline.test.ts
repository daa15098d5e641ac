import { describe, expect, it } from "vitest";
import { alertLabel, label } from "./timeline";

describe("timeline", () => {
  it("names event and alert kinds for people", () => {
    expect(label("declaration_assigned")).toBe("Declaration assigned");
    expect(label("bootstrap_token_requested")).toBe("Bootstrap token fetched");
    expect(label("rollout_cancelled")).toBe("Rollout cancelled");
    expect(alertLabel("device_stale")).toBe("no status report");
    expect(alertLabel("new_release")).toBe("new release");
  });
});
