// Builds the two pages readmarkd embeds: console/ and demo/, sharing assets/.
// The output is committed (dist/) and must be reproducible: no timestamps,
// content-hashed file names, one pinned toolchain (package-lock.json).
import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  // Relative URLs: the pages work under /console/ and /demo/ of any host.
  base: "./",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    rollupOptions: {
      input: {
        console: resolve(import.meta.dirname, "console/index.html"),
        demo: resolve(import.meta.dirname, "demo/index.html"),
      },
    },
  },
  server: {
    // `npm run dev` next to a readmarkd on 127.0.0.1:7700.
    proxy: { "/v1": { target: "http://127.0.0.1:7700", ws: true } },
  },
});
