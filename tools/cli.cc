#include "tools/cli.h"

#include <iostream>

namespace fedsim {
int cli_main(int, char**) {
  std::cerr << "fedsim: being assembled\n";
  return 1;
}
}  // namespace fedsim
