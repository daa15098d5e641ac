// Strings from devices and the feed are data: a device named like markup must show as that text
// and never become markup.
import { describe, expect, it, vi } from "vitest";
import { render } from "@testing-library/svelte";
import Timeline from "./Timeline.svelte";
import AlertList from "./AlertList.svelte";
import Rollout from "../screens/Rollout.svelte";

const hostile = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`;
const hostileUrl = `https://it.example.com/"><img src=x onerror="window.__pwned=3">`;

vi.mock("@tauri-apps/api/core", () => ({
  invoke: vi.fn(async (command: string) => {
    if (command === "rollout") {
      return {
        summary: { id: 7, wave: 1, platform: "macOS", label: "26.4.1 (25E253)", deadline: "2026-04-15T17:00:00", state: "active", total: 1, updated: 0, failed: 1, excluded: 0, inProgress: 0 },
        detailsUrl: hostileUrl,
        scoped: false,
        funnel: [{ phase: "failed", count: 1 }],
        failures: [{ reason: hostile, devices: [hostile] }],
        exclusions: [],
      };
    }
    throw { code: "not_found", message: `no ${command}` };
  }),
}));
vi.mock("@tauri-apps/api/event", () => ({ listen: vi.fn(async () => () => {}) }));

describe("hostile strings render as text", () => {
  it("in a device's timeline", () => {
    const { container } = render(Timeline, {
      entries: [{ at: "2026-04-12T09:00:00Z", kind: "install_failed", detail: hostile, tone: "trouble", rollout: 1, sincePrevious: null }],
      total: null,
    });
    expect(container.querySelector("img, script")).toBeNull();
    expect(container.textContent).toContain(hostile);
    expect(container.querySelector("li.trouble"), "the backend's tone marks the entry").not.toBeNull();
  });

  it("in the alerts list, as a device name and a detail", () => {
    const { container } = render(AlertList, {
      alerts: [{ id: 1, at: "2026-04-12T09:00:00Z", kind: "install_failed", device: "UDID-1", deviceName: hostile, rollout: 1, detail: hostile }],
    });
    expect(container.querySelector("img, script")).toBeNull();
    expect(container.textContent).toContain(hostile);
  });

  it("on a rollout: its DetailsURL and a failure reason", async () => {
    const { container, findByText } = render(Rollout, { id: 7 });
    await findByText(hostileUrl);
    expect(container.querySelector("img, script")).toBeNull();
    expect((window as unknown as { __pwned?: number }).__pwned).toBeUndefined();
  });
});
