// The Readmark mark: two check marks, as in "read".
export function Brand(props: { title: string }) {
  return (
    <span class="brand">
      <svg width="26" height="26" viewBox="0 0 26 26" aria-hidden="true">
        <rect width="26" height="26" rx="7" fill="#2357d9" />
        <path d="M5 13.5l3.5 3.5L15 10.5M11 16l1 1 7.5-7.5" fill="none" stroke="#fff" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round" />
      </svg>
      <span>{props.title}</span>
    </span>
  );
}
