// engine.h — reverse-mode autodiff: recording operations and running the graph backwards.
//
// Semantics (as PyTorch's):
// - backward() runs the graph from a tensor in reverse topological order, so a value used by several
//   operations receives the SUM of their gradients before its own backward runs.
// - Gradients ACCUMULATE into the leaves' .grad() with +=: calling backward twice (over two forward
//   passes, or once with retain_graph) doubles them. Call zero_grad() between steps.
// - After backward() the graph's closures and the tensors they saved are freed (unless retain_graph).
// - Inside a NoGradGuard nothing is recorded (tensor/grad_mode.h): inference allocates no graph.
// - Backward closures run in no-grad mode: higher-order gradients are not supported.
// - There are no version counters: a backward closure reads the values its forward saved, so writing
//   in place (through a detach()ed alias, a view made under NoGradGuard, or the raw ops::*_ functions)
//   into a tensor that a recorded graph saved changes that graph's gradients silently. Don't.
//
// A differentiable function (autograd/functions/*.cpp) computes its forward with the raw ops of
// tensor/ops.h inside a NoGradGuard, then calls record() with a closure computing the input gradients.
#pragma once

#include <initializer_list>
#include <vector>

#include "autograd/node.h"
#include "tensor/grad_mode.h"
#include "tensor/tensor.h"

namespace muxnet {

// True when grad mode is on and at least one input requires grad: the forward must be recorded.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Makes `out` the result of a recorded operation on `inputs`. backward(grad_out) returns one gradient
// per input (in order; undefined for inputs without one), each of that input's shape and dtype.
// Does nothing when needs_grad(inputs) is false.
void record(const Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward);

// Runs backward from root; see Tensor::backward.
void run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph);

// Zeroes the gradients of the given tensors (those that have one).
void zero_grad(const std::vector<Tensor>& tensors);

}  // namespace muxnet
