; C++ and CUDA (.cu/.cuh). The locator blanks CUDA qualifiers (__global__, __device__,
; __launch_bounds__(...)) and launch configurations (<<<grid, block>>>) before parsing, keeping every
; offset, so kernels parse as plain function definitions and launches as plain calls.

; Function definitions with a body; prototypes (declarations) never match. The declarator may sit
; inside a pointer or reference declarator (`const char* GetName()`, `torch::Tensor& out()`).
(function_definition
  declarator: [
    (function_declarator
      declarator: (_) @function.name)
    (pointer_declarator
      declarator: (function_declarator
        declarator: (_) @function.name))
    (reference_declarator
      (function_declarator
        declarator: (_) @function.name))
  ]
  body: (compound_statement) @function.body) @function

; Op registries, which parse as function definitions of a macro:
; TORCH_LIBRARY(ns, m) { ... }, TORCH_LIBRARY_FRAGMENT(ns, m), TORCH_LIBRARY_IMPL(ns, CUDA, m),
; TORCH_LIBRARY_EXPAND(NAME, m), PYBIND11_MODULE(name, m).
(function_definition
  declarator: (function_declarator
    declarator: (identifier) @registry.macro
    parameters: (parameter_list) @registry.parameters)
  body: (compound_statement)
  (#match? @registry.macro "^(TORCH_LIBRARY|PYBIND11_MODULE)")) @registry

; `m.def(...)`, `m.impl(...)`, and chained `.def(...)`; the locator keeps those inside a registry
; block whose module variable the chain starts from.
(call_expression
  function: (field_expression
    argument: (_) @registration.object
    field: (field_identifier) @registration.method)
  arguments: (argument_list) @registration.arguments
  (#any-of? @registration.method "def" "impl")) @registration

; Calls by plain, qualified or template name: helpers, macros and ORT's CreateLiteCustomOp.
(call_expression
  function: [
    (identifier)
    (qualified_identifier)
    (template_function)
  ] @call.function
  arguments: (argument_list) @call.arguments) @call

; Function-like and object-like macros: a launch inside one counts where the macro is used.
(preproc_function_def
  name: (identifier) @macro.name) @macro

(preproc_def
  name: (identifier) @macro.name) @macro

; Classes and structs with a body: an ORT custom op's class names its kernel type in its base
; `Ort::CustomOpBase<Op, Kernel>`.
[
  (class_specifier
    name: (_) @class.name
    body: (field_declaration_list))
  (struct_specifier
    name: (_) @class.name
    body: (field_declaration_list))
] @class
