// Formatting shared by the pages.

/** clock formats Unix ms as a local time of day with seconds, e.g. "14:03:27". */
export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** dateTime formats Unix ms as local date and time. */
export function dateTime(ms: number): string {
  const d = new Date(ms);
  return `${d.toLocaleDateString()} ${clock(ms)}`;
}

/** duration formats ms as e.g. "3d 4h", "5m 2s". */
export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const parts: Array<[number, string]> = [
    [Math.floor(s / 86400), "d"],
    [Math.floor(s / 3600) % 24, "h"],
    [Math.floor(s / 60) % 60, "m"],
    [s % 60, "s"],
  ];
  const first = parts.findIndex(([v]) => v > 0);
  if (first < 0) return "0s";
  return parts
    .slice(first, first + 2)
    .map(([v, u]) => `${v}${u}`)
    .join(" ");
}

/** bytes formats a byte count, e.g. "48.8 MiB". */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}
