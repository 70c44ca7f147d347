#include "core/base/blas_threads.h"

#include <dlfcn.h>

#include <mutex>

namespace fedsim {

void use_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] {
    using SetThreads = void (*)(int);
    if (void* f = dlsym(RTLD_DEFAULT, "openblas_set_num_threads")) reinterpret_cast<SetThreads>(f)(1);
  });
}

}  // namespace fedsim
