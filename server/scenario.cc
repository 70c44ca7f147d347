#include "server/scenario.h"

#include <fstream>
#include <sstream>
#include <thread>

#include "clients/optimizer.h"
#include "core/data/data_source.h"
#include "core/base/errors.h"
#include "core/models/model.h"
#include "server/aggregator.h"
#include "server/algorithm.h"
#include "server/round_policy.h"

namespace fedsim {

namespace {
void check_algorithm_components(const Scenario& s, const Config& root);

constexpr std::int64_t kMaxInt = std::numeric_limits<std::int64_t>::max();
// Client ids are 32-bit (server/population.h).
constexpr std::int64_t kMaxClients = std::numeric_limits<std::uint32_t>::max();

// Checks that a registry knows the name under `key` (so typos fail at load).
template <class RegistryT>
std::string registered_name(const Config& c, const std::string& key, const std::string& fallback) {
  const std::string name = c.get_string(key, fallback);
  if (!RegistryT::instance().contains(name))
    c.fail(key, "one of: " + RegistryT::instance().known_names(), "'" + name + "'");
  return name;
}

}  // namespace

Scenario parse_scenario(const std::string& yaml_text, const std::string& file,
                        const std::vector<std::string>& overrides) {
  Config root = Config::parse_string(yaml_text, file);
  for (const auto& o : overrides) Config::apply_override(root.node(), o);

  Scenario s;
  s.file = file;
  s.root = root;
  s.name = root.get_string("name", "scenario");
  s.seed = static_cast<std::uint64_t>(root.get_int("seed", 1, 0, kMaxInt));

  s.data = root.child("data");
  registered_name<DataSourceRegistry>(s.data, "source", "fashion_mnist");
  s.partition = root.child("partition");
  registered_name<PartitionerRegistry>(s.partition, "scheme", "iid");
  s.model = root.child("model");
  registered_name<ModelRegistry>(s.model, "name", "softmax_regression");

  const Config algorithm = root.child("algorithm");
  s.algorithm_name = registered_name<AlgorithmRegistry>(algorithm, "name", "fedpaq");
  s.algorithm = AlgorithmRegistry::instance().create(algorithm.where("name"), s.algorithm_name, algorithm);

  s.aggregator = root.child("aggregator");
  registered_name<AggregatorRegistry>(s.aggregator, "name", s.algorithm->default_aggregator());
  s.weight_by_samples = s.aggregator.get_bool("weight_by_samples", true);

  s.num_clients = static_cast<std::size_t>(root.get_int("clients", 1, kMaxClients));
  s.clients_per_round = static_cast<std::size_t>(root.get_int("clients_per_round", 1, 10'000'000));
  if (s.clients_per_round > s.num_clients)
    root.fail("clients_per_round", "at most clients (" + std::to_string(s.num_clients) + ")",
              "'" + std::to_string(s.clients_per_round) + "'");
  s.rounds = static_cast<std::size_t>(root.get_int("rounds", 1, 100'000'000));
  s.eval_every = static_cast<std::size_t>(root.get_int("eval_every", 1, 1, kMaxInt));
  s.threads = static_cast<std::size_t>(root.get_int("threads", 0, 0, 1024));

  s.training.local_steps = static_cast<std::size_t>(root.get_int("local_steps", 1, 1, 1'000'000));
  s.training.batch_size = static_cast<std::size_t>(root.get_int("batch_size", 32, 0, 1'000'000));
  s.training.learning_rate = root.get_double("learning_rate", 0.05, 0.0, 1e6);
  s.training.weight_decay = root.get_double("weight_decay", 0.0, 0.0, 1e6);
  s.training.optimal_levels = root.get_choice("quantization_levels", "uniform", {"uniform", "optimal"}) == "optimal";
  s.server_learning_rate = root.get_double("server_learning_rate", 1.0, 0.0, 1e6);

  s.server_optimizer = root.child("server_optimizer");
  s.server_optimizer_name = registered_name<OptimizerRegistry>(s.server_optimizer, "name", "sgd");
  make_optimizer(s.server_optimizer);
  s.client_optimizer = root.child("client_optimizer");
  s.client_optimizer_name = registered_name<OptimizerRegistry>(s.client_optimizer, "name", "sgd");
  make_optimizer(s.client_optimizer);
  s.reset_client_optimizer = s.client_optimizer.get_bool("reset_each_round", false);
  if (s.algorithm->update_content() == UpdateContent::kWeights && s.server_optimizer_name != "sgd")
    s.server_optimizer.fail("name", "sgd (algorithm " + s.algorithm_name + " sends " +
                                        s.algorithm->describe_updates() + ", not a pseudo-gradient)",
                            "'" + s.server_optimizer_name + "'");

  s.uplink = PipelineSpec::parse(root, "uplink");
  s.downlink = PipelineSpec::parse(root, "downlink");
  const std::vector<std::string> uplink_stages = s.uplink.stage_names();
  for (std::size_t i = 1; i < uplink_stages.size(); ++i)
    if (uplink_stages[i] == "chb_censoring")
      root.fail("uplink", "chb_censoring as the first stage (it is told the model's movement)",
                "it at position " + std::to_string(i + 1));
  check_algorithm_components(s, root);

  s.server = root.child("server");
  if (const std::string own = s.algorithm->policy(); !own.empty()) {
    // An algorithm with its own schedule (no server rounds): no other policy.
    const std::string named = s.server.get_string("policy", own);
    if (named != own)
      s.server.fail("policy", "'" + own + "' (algorithm " + s.algorithm_name + " runs without a server) or no policy",
                    "'" + named + "'");
    s.policy_name = own;
  } else {
    s.policy_name = registered_name<RoundPolicyRegistry>(s.server, "policy", "wait_all");
  }
  if (!s.make_policy()->broadcasts_to_all() && !s.downlink.is_plain_float32())
    throw InputError(s.file + ": downlink: compression of the downlink needs a synchronous server policy "
                     "(the broadcast memory assumes every client sees every round's model)");

  const Config output = root.child("output");
  s.output_dir = output.get_string("dir", "");
  s.progress = output.get_bool("progress", true);

  return s;
}

namespace {

// Components that exist for one algorithm only (FedVote's vote quantizers
// and vote aggregator) are rejected under any other, naming the one they
// need; then the algorithm checks the rest itself.
void check_algorithm_components(const Scenario& s, const Config& root) {
  const std::string q = s.uplink.quantizer_name();
  const std::string aggregator = s.aggregator.get_string("name", s.algorithm->default_aggregator());
  for (const auto& [name, entry] : AlgorithmRegistry::instance().entries()) {
    if (name == s.algorithm_name) continue;
    const auto other = entry.factory(Config());
    for (const std::string& own : other->own_components()) {
      const std::string needs = " needs algorithm: {name: " + name + "})";
      if (own == q) root.fail("uplink", "a quantizer of " + s.algorithm->describe_updates() + " (" + q + needs, "'" + q + "'");
      if (own == aggregator)
        s.aggregator.fail("name", "an aggregator of " + s.algorithm->describe_updates() + " ('" + aggregator + "'" + needs,
                          "'" + aggregator + "'");
    }
  }
  s.algorithm->check(AlgorithmCheck{root, s.uplink, s.aggregator});
}

}  // namespace

std::unique_ptr<RoundPolicy> Scenario::make_policy() const {
  const PolicyInput input{num_clients, clients_per_round, rounds};
  return RoundPolicyRegistry::instance().create(server.where("policy"), policy_name, server, input);
}

Scenario load_scenario(const std::string& file, const std::vector<std::string>& overrides) {
  std::ifstream in(file);
  if (!in) throw InputError(file + ": cannot open scenario file (does it exist?)");
  std::stringstream text;
  text << in.rdbuf();
  return parse_scenario(text.str(), file, overrides);
}

}  // namespace fedsim
