// glog set-up for evl: one line per event, prefixed with "rR/W" when running under MPI (rank read
// from the launcher's environment before MPI_Init, so even start-up errors carry it).
#pragma once

namespace evl {

void InitLogging(const char* argv0);
// Rank/world as seen by logging; (0, 1) outside MPI.
int LogRank();
int LogWorld();

}  // namespace evl
