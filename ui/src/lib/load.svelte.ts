// A screen's data: loaded on mount, reloaded whenever the fleet moves, errors kept as text.
import { live } from "./live.svelte";
import { messageOf } from "./api";

export function loader<T>(fetch: () => Promise<T>) {
  const state = $state({ data: null as T | null, error: "", loading: true });
  async function load() {
    try {
      state.data = await fetch();
      state.error = "";
    } catch (e) {
      state.error = messageOf(e);
    } finally {
      state.loading = false;
    }
  }
  $effect(() => {
    void live.version;
    load();
  });
  return { state, load };
}
