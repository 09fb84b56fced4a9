// engine.cpp — recording, the backward pass, and Tensor's autograd methods.
#include "autograd/engine.h"

#include <atomic>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "tensor/ops.h"

namespace muxnet {

namespace {

std::atomic<uint64_t> g_next_seq{0};

void record_view(const Tensor& src, const Tensor& out, const char* name, detail::ViewBackward backward) {
  record(out, name, {src}, [backward = std::move(backward)](const Tensor& g) {
    return std::vector<Tensor>{backward(g)};
  });
}

void install_hooks() { detail::record_view_hook = &record_view; }

Edge make_edge(const Tensor& input) {
  Edge e;
  e.shape = input.shape();
  e.dtype = input.dtype();
  e.device = input.device();
  const auto& meta = input.autograd_meta();
  if (!meta) return e;
  if (meta->grad_fn) {
    e.fn = meta->grad_fn;
  } else {
    e.leaf = meta;
  }
  return e;
}

// leaf.grad += g (the first gradient is copied, so the leaf owns its gradient buffer).
void accumulate_leaf(AutogradMeta& leaf, const Tensor& g) {
  if (!leaf.grad.defined()) {
    leaf.grad = g.contiguous().is_same(g) ? g.clone() : g.contiguous();
  } else {
    ops::add_(leaf.grad, g);
  }
}

void check_grad(const char* where, int input, const Tensor& g, const Shape& shape, DType dtype, Device device) {
  MUXNET_CHECK(g.shape() == shape, "backward of ", where, ": gradient for input ", input, " has shape ",
               g.shape(), ", expected ", shape);
  MUXNET_CHECK(g.dtype() == dtype, "backward of ", where, ": gradient for input ", input, " has dtype ",
               g.dtype(), ", expected ", dtype);
  // A gradient must live where its input lives (a backward that built a temporary on the cpu for a
  // cuda input is caught here, naming the function, rather than in a later add_).
  MUXNET_CHECK(g.device() == device, "backward of ", where, ": gradient for input ", input, " is on ",
               g.device(), ", expected ", device);
}

}  // namespace

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

void record(const Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (!needs_grad(inputs)) return;
  for (const Tensor& in : inputs) {
    // A function that returned one of its inputs unchanged (e.g. contiguous() of a contiguous tensor)
    // already carries that input's history.
    if (in.defined() && out.is_same(in)) return;
  }
  MUXNET_CHECK(!out.autograd_meta(), name, ": output already has autograd history");
  auto node = std::make_shared<Node>();
  node->name = name;
  node->backward = std::move(backward);
  node->out_shape = out.shape();
  node->out_dtype = out.dtype();
  node->seq = g_next_seq++;
  node->edges.reserve(inputs.size());
  for (const Tensor& in : inputs) node->edges.push_back(in.defined() ? make_edge(in) : Edge{});
  auto meta = std::make_shared<AutogradMeta>();
  meta->grad_fn = std::move(node);
  out.set_autograd_meta(std::move(meta));
  install_hooks();
}

void run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph) {
  MUXNET_CHECK(root.requires_grad(), "backward: tensor does not require grad");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    MUXNET_CHECK(root.numel() == 1, "backward: a gradient can be created implicitly only for a ",
                 "one-element output, got shape ", root.shape(), " (pass grad_output)");
    seed = ones(root.shape(), root.dtype(), root.device());
  }
  MUXNET_CHECK(seed.shape() == root.shape(), "backward: grad_output has shape ", seed.shape(),
               ", expected ", root.shape());
  MUXNET_CHECK(seed.dtype() == root.dtype(), "backward: grad_output has dtype ", seed.dtype(),
               ", expected ", root.dtype());
  MUXNET_CHECK(seed.device() == root.device(), "backward: grad_output is on ", seed.device(), ", expected ",
               root.device());

  NoGradGuard no_grad;  // backward closures compute with raw ops; nothing is recorded
  AutogradMeta& root_meta = *root.autograd_meta();
  if (!root_meta.grad_fn) {
    accumulate_leaf(root_meta, seed);
    return;
  }

  // Count, for every reachable node, how many edges from reachable nodes point at it.
  std::unordered_map<Node*, int> pending_inputs;
  std::vector<Node*> stack{root_meta.grad_fn.get()};
  std::unordered_set<Node*> seen{root_meta.grad_fn.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    MUXNET_CHECK(!n->released, "backward: the graph through ", n->name,
                 " was freed by a previous backward(); pass retain_graph = true to run backward twice");
    for (const Edge& e : n->edges) {
      if (!e.fn) continue;
      pending_inputs[e.fn.get()]++;
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }

  // Kahn's algorithm: a node runs once every node that feeds gradient into it has run. Among ready
  // nodes the most recently created runs first, which keeps the order deterministic.
  auto later_first = [](const Node* a, const Node* b) { return a->seq < b->seq; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(later_first)> ready(later_first);
  std::unordered_map<Node*, Tensor> grads;
  grads[root_meta.grad_fn.get()] = seed;
  ready.push(root_meta.grad_fn.get());
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    // A node reached by no gradient (e.g. its output only fed integer ops) still has to release its
    // inputs' pending counts, but computes nothing.
    std::vector<Tensor> input_grads;
    auto git = grads.find(n);
    if (git != grads.end()) {
      Tensor g = std::move(git->second);
      grads.erase(git);
      input_grads = n->backward(g);
      MUXNET_CHECK(input_grads.size() == n->edges.size(), "backward of ", n->name, ": returned ",
                   input_grads.size(), " gradients for ", n->edges.size(), " inputs");
    }
    for (size_t i = 0; i < n->edges.size(); ++i) {
      const Edge& e = n->edges[i];
      if (i < input_grads.size() && e.active() && input_grads[i].defined()) {
        const Tensor& gi = input_grads[i];
        check_grad(n->name, int(i), gi, e.shape, e.dtype, e.device);
        if (e.leaf) {
          accumulate_leaf(*e.leaf, gi);
        } else {
          auto it = grads.find(e.fn.get());
          if (it == grads.end()) {
            grads.emplace(e.fn.get(), gi);
          } else {
            it->second = ops::add(it->second, gi);
          }
        }
      }
      if (e.fn && --pending_inputs[e.fn.get()] == 0) ready.push(e.fn.get());
    }
    if (!retain_graph) {
      n->backward = nullptr;  // frees the saved tensors
      n->released = true;
    }
  }
}

void zero_grad(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors) t.zero_grad();
}

// ---------------------------------------------------------------- Tensor's autograd methods

const Tensor& Tensor::requires_grad_(bool on) const {
  const auto& meta = autograd_meta();
  if (meta && meta->grad_fn) {
    MUXNET_FAIL("requires_grad_: only leaf tensors can change requires_grad (this one was made by ",
                meta->grad_fn->name, "); use detach()");
  }
  if (on) {
    MUXNET_CHECK(is_floating(dtype()), "requires_grad_: only floating tensors can require grad, got ", dtype());
    if (!meta) set_autograd_meta(std::make_shared<AutogradMeta>());
    install_hooks();
  } else if (meta) {
    // Recorded graphs hold this leaf's meta in their edges: dropping it would send their gradients
    // to a record nobody can read.
    MUXNET_CHECK(meta.use_count() == 1, "requires_grad_: this leaf is used by a recorded graph; ",
                 "use detach() for a copy that does not require grad");
    set_autograd_meta(nullptr);
  }
  return *this;
}

bool Tensor::is_leaf() const {
  const auto& meta = autograd_meta();
  return !meta || !meta->grad_fn;
}

Tensor Tensor::grad() const {
  const auto& meta = autograd_meta();
  return meta ? meta->grad : Tensor();
}

void Tensor::zero_grad() const {
  const auto& meta = autograd_meta();
  if (meta && meta->grad.defined()) {
    NoGradGuard no_grad;
    meta->grad.zero_();
  }
}

void Tensor::set_grad(const Tensor& grad) const {
  const auto& meta = autograd_meta();
  MUXNET_CHECK(meta && !meta->grad_fn, "set_grad: only leaves that require grad hold a gradient");
  if (grad.defined()) {
    MUXNET_CHECK(grad.shape() == shape(), "set_grad: gradient has shape ", grad.shape(), ", expected ", shape());
    MUXNET_CHECK(grad.dtype() == dtype(), "set_grad: gradient has dtype ", grad.dtype(), ", expected ", dtype());
    MUXNET_CHECK(grad.device() == device(), "set_grad: gradient is on ", grad.device(), ", expected ", device());
  }
  meta->grad = grad;
}

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  run_backward(*this, grad_output, retain_graph);
}

std::string Tensor::grad_fn_name() const {
  const auto& meta = autograd_meta();
  return meta && meta->grad_fn ? meta->grad_fn->name : "";
}

}  // namespace muxnet
