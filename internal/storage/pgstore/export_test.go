package pgstore

// SetPageSize sets the rows per Scan page, so that tests cross page
// boundaries with few keys.
func SetPageSize(s *Store, n int) { s.pageSize = n }
