#include "clients/optimizer.h"

#include <sstream>

namespace fedsim {

std::unique_ptr<Optimizer> make_optimizer(const Config& settings) {
  const std::string name = settings.get_string("name", "sgd");
  return OptimizerRegistry::instance().create(settings.where("name"), name, settings);
}

double get_decay(const Config& settings, const std::string& key, double fallback) {
  const double value = settings.get_double(key, fallback, 0.0, 1.0);
  if (!(value < 1.0)) {
    std::ostringstream found;
    found << value;
    settings.fail(key, "a number in [0, 1)", found.str());
  }
  return value;
}

}  // namespace fedsim
