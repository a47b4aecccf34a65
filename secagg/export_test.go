package secagg

// NeighboursOf exposes the server's neighbour graph to the external tests,
// which predict from it whether a dropout pattern lets a round finish.
func (s *Server) NeighboursOf(id uint32) []uint32 { return s.g.neighbours(id) }
