// ModelRegistry: the models one worker process holds, by id, each served by its own Backend
// instance. The backend built from init (the worker's command-line model) is the default that
// requests without a `model` use; load_model adds more, unload_model drops them. Backends are
// shared_ptr so a generate that is running keeps its backend alive through an unload (the
// mapping is released when the last request on it ends). Runtime thread only.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "worker/backends/backend.hpp"

namespace drover::worker {

class ModelRegistry {
 public:
  // Registers every model `backend` serves. The first backend added is the default.
  void add(const std::shared_ptr<Backend>& backend) {
    for (const auto& id : backend->models()) {
      models_[id] = backend;
      if (default_.empty()) default_ = id;
    }
  }
  // Removes the model; false when it was not loaded.
  bool remove(const std::string& id) { return models_.erase(id) > 0; }
  bool contains(const std::string& id) const { return models_.contains(id); }

  // The backend for `id` (empty: the default model, or else any loaded model), or an
  // unknown_model error naming the model and what is loaded.
  BackendResult<std::shared_ptr<Backend>> find(const std::string& id) const {
    auto it = id.empty() ? models_.find(default_) : models_.find(id);
    if (it == models_.end() && id.empty() && !models_.empty()) it = models_.begin();
    if (it == models_.end()) {
      return BackendResult<std::shared_ptr<Backend>>(
          boost::system::in_place_error,
          BackendError{RpcError::unknown_model, "Unknown model",
                       json{{"model", id}, {"loaded", ids()}}});
    }
    return it->second;
  }

  // Each distinct backend once.
  std::vector<std::shared_ptr<Backend>> backends() const {
    std::vector<std::shared_ptr<Backend>> out;
    for (const auto& [id, b] : models_) {
      if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
    }
    return out;
  }
  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (const auto& [id, backend] : models_) out.push_back(id);
    return out;
  }

 private:
  std::map<std::string, std::shared_ptr<Backend>> models_;
  std::string default_;
};

}  // namespace drover::worker
