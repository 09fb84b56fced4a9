// node.h — the recorded graph: one Node per differentiable operation.
//
// A tensor that requires grad carries an AutogradMeta. For a leaf (a parameter, or any tensor marked
// with requires_grad_()), the meta holds the accumulated gradient. For the result of a recorded
// operation, the meta points at the Node that made it. A Node holds the backward closure (which
// captured whatever forward values it needs: the "saved tensors") and one Edge per input saying where
// that input's gradient goes: to the Node that made the input, or into the input's leaf meta.
// Edges point at Nodes and metas, never at input tensors, so the graph keeps alive only what a
// backward closure captured.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace muxnet {

struct Node;

struct AutogradMeta {
  Tensor grad;                    // leaves: the accumulated gradient (undefined until reached)
  std::shared_ptr<Node> grad_fn;  // null for leaves
};

struct Edge {
  std::shared_ptr<Node> fn;            // the input was made by this node, or
  std::shared_ptr<AutogradMeta> leaf;  // the input is a leaf: accumulate into leaf->grad
  Shape shape;                         // the input's shape, dtype and device, to check the gradient
  DType dtype = DType::F32;
  Device device = Device::CPU;
  bool active() const { return fn != nullptr || leaf != nullptr; }
};

// Maps the gradient of the output to one gradient per input (undefined = no gradient).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

struct Node {
  const char* name = "";  // the function's name, for error messages ("matmul")
  std::vector<Edge> edges;
  BackwardFn backward;    // released (empty) after a backward() without retain_graph
  Shape out_shape;
  DType out_dtype = DType::F32;
  uint64_t seq = 0;       // creation order: later nodes run first among those ready
  bool released = false;
};

}  // namespace muxnet
