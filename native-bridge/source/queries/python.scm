; Classes: name and base-class list.
(class_definition
  name: (identifier) @class.name
  superclasses: (argument_list)? @class.bases) @class

; Functions; the locator keeps those whose parent is a class body (methods).
(function_definition
  name: (identifier) @function.name) @function

; Submodule construction: `self.<path> = Callee(...)`, path with attributes and indices.
(assignment
  left: [(attribute) (subscript)] @assign.target
  right: (call
    function: [(identifier) (attribute)] @assign.callee
    arguments: (argument_list) @assign.arguments)) @assign

; `from module import Name` and `from module import Name as Alias`.
(import_from_statement
  module_name: (_) @from.module
  name: [
    (dotted_name) @from.name
    (aliased_import
      name: (dotted_name) @from.name
      alias: (identifier) @from.alias)
  ])

; `import module` and `import module as alias`.
(import_statement
  name: [
    (dotted_name) @import.module
    (aliased_import
      name: (dotted_name) @import.module
      alias: (identifier) @import.alias)
  ])
