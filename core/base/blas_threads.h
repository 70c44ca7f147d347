// fedsim runs its own worker threads, one client each, and each calls BLAS
// (through Armadillo) on small matrices. A multi-threaded BLAS would spawn
// threads of its own inside those calls; OpenBLAS's pthread build is safe to
// call from many threads and gives thread-count-independent results only when
// it runs each call on the calling thread. (Its serial build is not safe to
// call concurrently: results then change from run to run.)
#pragma once

namespace fedsim {

// Sets the BLAS library's own thread count to 1 if the loaded BLAS is
// OpenBLAS (found at run time, so any BLAS links); a no-op otherwise. Idempotent.
void use_single_threaded_blas();

}  // namespace fedsim
