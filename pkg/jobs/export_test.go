package jobs

// SetBatchSizes sets the page sizes of s's outbox and reaper rounds (1000
// each by default), so that tests page with a few jobs. Before Run only.
func SetBatchSizes(s *Service, recover, reap int) { s.recoverBatch, s.reapBatch = recover, reap }
