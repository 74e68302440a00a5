// Package snapshot holds the semantics of a Sluice snapshot that every binary
// shares: the YAML/JSON codec of the user contract, validation beyond the
// protoc-gen-validate rules, and the diff between two versions.
//
// The generated API (package sluicev1) describes what a snapshot is; this
// package decides what a good one is and how users write it. sluice-cp
// validates and diffs every Apply with it, sluice-dp validates what it
// receives before compiling it, and sluicectl parses, validates (offline) and
// prints snapshots with it. Keeping these rules here, beside the API, means
// controlplane/ and dataplane/ never import each other and can never disagree
// about whether a snapshot is valid.
//
// # The YAML contract
//
// Keys are the proto field names (snake_case). Enum values are written without
// their type prefix (lb_policy: ROUND_ROBIN for LB_POLICY_ROUND_ROBIN); the
// full name is accepted too, the short one is printed. Durations are Go
// duration strings ("3s", "1m30s", "250ms"). Fields with explicit presence
// (optional uint32 weight) stay absent when absent. A list of one scalar may
// be written as the scalar alone (method: GET for method: [GET]); a list of
// mappings is always written as a list. Decoding walks the YAML node tree
// with the message descriptors, so a new proto field needs no codec change,
// and it is strict: unknown keys, wrong types, out-of-range numbers,
// unknown enum values, bad durations, duplicate keys, YAML 1.1 booleans
// (yes/no/on/off) and integers with a leading zero (010, octal to YAML 1.1
// and decimal to YAML 1.2) are refused with the field path and line of
// each fault.
//
// # Errors
//
// Every function that judges a snapshot returns [Errors], one [FieldError] per
// fault with its path in the document (clusters[0].endpoints[1].weight), so a
// user fixes everything in one round. [ToStatus] and [FromStatus] carry them
// across gRPC as INVALID_ARGUMENT with a google.rpc.BadRequest detail.
package snapshot
