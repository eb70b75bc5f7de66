package pgstore

// SetPageSize sets the rows per Scan page, so that tests cross page
// boundaries with few keys.
func SetPageSize(s *Store, n int) { s.pageSize = n }

// Table is the (unquoted) table name the store was opened on.
func Table(s *Store) string { return s.name }
