//! Which linear layers an adapter covers, decided by PEFT's rules (`check_target_module_exists` in
//! `peft/tuners/tuners_utils.py`) on HF module paths such as `model.layers.3.self_attn.q_proj`.

use regex::Regex;

/// The `target_modules` of an adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetModules {
    /// Module names: a path matches when it equals a name or ends with `.name`.
    Names(Vec<String>),
    /// A regular expression the whole module path must match (PEFT's `target_modules` as a string).
    Regex(String),
    /// Every linear layer except the model's output layers (LLaMA-Factory `all`, PEFT `all-linear`).
    AllLinear,
}

impl TargetModules {
    /// LLaMA-Factory's `lora_target` spelling: `all`, or names separated by commas.
    pub fn parse_llama_factory(s: &str) -> Self {
        let s = s.trim();
        if s == "all" || s == "all-linear" {
            TargetModules::AllLinear
        } else {
            TargetModules::Names(
                s.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        }
    }

    /// As written in messages: `all`, `q_proj,v_proj` or `regex:...`.
    pub fn describe(&self) -> String {
        match self {
            TargetModules::Names(n) => n.join(","),
            TargetModules::Regex(r) => format!("regex:{r}"),
            TargetModules::AllLinear => "all".into(),
        }
    }
}

/// PEFT's module matching, compiled once.
#[derive(Debug, Clone)]
pub struct TargetSelector {
    targets: TargetModules,
    target_regex: Option<Regex>,
    exclude: Option<TargetModules>,
    exclude_regex: Option<Regex>,
    layers: Option<Vec<usize>>,
    layer_regexes: Vec<Regex>,
}

fn full_match(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid regular expression: {e}"))
}

/// `path == name` or `path` ends with `.name`.
fn names_match(names: &[String], path: &str) -> bool {
    names.iter().any(|n| {
        path == n
            || path
                .strip_suffix(n.as_str())
                .is_some_and(|p| p.ends_with('.'))
    })
}

impl TargetSelector {
    /// `layers_to_transform` restricts name targets to the given layer indices; the index is the first
    /// number after a `<layers_pattern>.` component, or with no pattern the first dotted number that is
    /// at least the third path component (PEFT's `.*?\.[^.]*\.(\d+)\.`).
    pub fn new(
        targets: TargetModules,
        exclude: Option<TargetModules>,
        layers_to_transform: Option<Vec<usize>>,
        layers_pattern: Option<Vec<String>>,
    ) -> Result<Self, String> {
        let target_regex = match &targets {
            TargetModules::Regex(r) => Some(full_match(r)?),
            _ => None,
        };
        let exclude_regex = match &exclude {
            Some(TargetModules::Regex(r)) => Some(full_match(r)?),
            _ => None,
        };
        let layer_regexes = match layers_pattern.filter(|p| !p.is_empty()) {
            None => vec![Regex::new(r"^.*?\.[^.]*\.(\d+)\.").map_err(|e| e.to_string())?],
            Some(patterns) => patterns
                .iter()
                .map(|p| {
                    Regex::new(&format!(r"^(?:.*?\.)?{p}\.(\d+)\."))
                        .map_err(|e| format!("layers_pattern: {e}"))
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            targets,
            target_regex,
            exclude,
            exclude_regex,
            layers: layers_to_transform.filter(|l| !l.is_empty()),
            layer_regexes,
        })
    }

    pub fn targets(&self) -> &TargetModules {
        &self.targets
    }

    /// The names of a name list that match none of `paths` (a typo such as `foo_proj`).
    pub fn unmatched_names<'a>(&self, paths: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
        match &self.targets {
            TargetModules::Names(names) => names
                .iter()
                .filter(|n| {
                    !paths
                        .clone()
                        .any(|p| names_match(std::slice::from_ref(*n), p))
                })
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The `layers_to_transform` indices not among `present` (the model's layer indices).
    pub fn missing_layers(&self, present: &[usize]) -> Vec<usize> {
        self.layers
            .iter()
            .flatten()
            .copied()
            .filter(|l| !present.contains(l))
            .collect()
    }

    /// The layer index PEFT reads from a module path, if any.
    pub fn layer_index(&self, path: &str) -> Option<usize> {
        self.layer_regexes
            .iter()
            .find_map(|re| re.captures(path))
            .and_then(|c| c.get(1))
            .and_then(|m| m.as_str().parse().ok())
    }

    /// Whether the linear layer at `path` gets an adapter. `output_layers` are the names that
    /// [`TargetModules::AllLinear`] leaves out.
    pub fn selects(&self, path: &str, output_layers: &[String]) -> bool {
        let excluded = match (&self.exclude, &self.exclude_regex) {
            (_, Some(re)) => re.is_match(path),
            (Some(TargetModules::Names(n)), _) => names_match(n, path),
            _ => false,
        };
        if excluded {
            return false;
        }
        let by_name = match &self.targets {
            TargetModules::Regex(_) => {
                // PEFT applies layers_to_transform only to name lists.
                return self
                    .target_regex
                    .as_ref()
                    .is_some_and(|re| re.is_match(path));
            }
            TargetModules::Names(n) => names_match(n, path),
            TargetModules::AllLinear => !names_match(output_layers, path),
        };
        match (&self.layers, by_name) {
            (Some(layers), true) => self.layer_index(path).is_some_and(|i| layers.contains(&i)),
            (_, found) => found,
        }
    }
}

/// PEFT's per-module overrides `rank_pattern` / `alpha_pattern`: keys are regular expressions (or
/// plain module names) and the first key, in the order written, that matches a module path as
/// `(.*\.)?(key)$` from its start decides (`get_pattern_key` in `peft/utils/other.py`). The order
/// is kept because it decides between overlapping keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Patterns<T>(pub Vec<(String, T)>);

impl<T> Default for Patterns<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Patterns<T> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn regex(key: &str) -> Result<Regex, regex::Error> {
        Regex::new(&format!(r"^(?:.*\.)?(?:{key})$"))
    }

    /// The first key matching the module `path`, and its value.
    fn first_match(&self, path: &str) -> Option<&(String, T)> {
        self.0
            .iter()
            .find(|(k, _)| Self::regex(k).is_ok_and(|re| re.is_match(path)))
    }

    /// The value of the first key matching the module `path`.
    pub fn lookup(&self, path: &str) -> Option<&T> {
        self.first_match(path).map(|(_, v)| v)
    }

    /// The first key matching the module `path`.
    pub fn key_for(&self, path: &str) -> Option<&str> {
        self.first_match(path).map(|(k, _)| k.as_str())
    }

    /// Two keys that both match `path` with different values, if any: PEFT applies the first one
    /// but saves the keys sorted, so such an adapter reloads with a different rank or alpha.
    pub fn conflict(&self, path: &str) -> Option<(&str, &str)>
    where
        T: PartialEq,
    {
        let matching: Vec<&(String, T)> = self
            .0
            .iter()
            .filter(|(k, _)| Self::regex(k).is_ok_and(|re| re.is_match(path)))
            .collect();
        let first = matching.first()?;
        matching
            .iter()
            .find(|(_, v)| *v != first.1)
            .map(|other| (first.0.as_str(), other.0.as_str()))
    }

    /// Every key that is not a valid regular expression, with the reason.
    pub fn invalid_keys(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(k, _)| Self::regex(k).err().map(|e| (k.clone(), e.to_string())))
            .collect()
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Patterns<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Ordered<T> {
            type Value = Patterns<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of module patterns")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, T>()? {
                    out.push((k, v));
                }
                Ok(Patterns(out))
            }
        }
        d.deserialize_map(Ordered(std::marker::PhantomData))
    }
}

impl<T: serde::Serialize> serde::Serialize for Patterns<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> TargetModules {
        TargetModules::Names(n.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn names_match_whole_components_only() {
        let s =
            TargetSelector::new(names(&["q_proj", "up_proj"]), None, None, None).expect("selector");
        let out = vec!["lm_head".to_string()];
        assert!(s.selects("model.layers.0.self_attn.q_proj", &out));
        assert!(s.selects("q_proj", &out));
        assert!(s.selects("model.layers.1.mlp.up_proj", &out));
        assert!(!s.selects("model.layers.0.self_attn.xq_proj", &out));
        assert!(!s.selects("model.layers.0.self_attn.k_proj", &out));
    }

    #[test]
    fn all_linear_leaves_out_the_output_layer() {
        let s = TargetSelector::new(TargetModules::AllLinear, None, None, None).expect("selector");
        let out = vec!["lm_head".to_string()];
        assert!(s.selects("model.layers.0.mlp.down_proj", &out));
        assert!(!s.selects("lm_head", &out));
    }

    #[test]
    fn layers_to_transform_reads_the_first_layer_index() {
        let s = TargetSelector::new(names(&["q_proj"]), None, Some(vec![1, 3]), None)
            .expect("selector");
        assert_eq!(s.layer_index("model.layers.12.experts.0.q_proj"), Some(12));
        assert!(s.selects("model.layers.1.self_attn.q_proj", &[]));
        assert!(s.selects("model.layers.3.self_attn.q_proj", &[]));
        assert!(!s.selects("model.layers.2.self_attn.q_proj", &[]));
        assert!(!s.selects("model.layers.13.self_attn.q_proj", &[]));
        let p = TargetSelector::new(
            names(&["q_proj"]),
            None,
            Some(vec![2]),
            Some(vec!["h".into()]),
        )
        .expect("selector");
        assert!(p.selects("transformer.h.2.attn.q_proj", &[]));
        assert!(!p.selects("model.layers.2.self_attn.q_proj", &[]));
    }

    #[test]
    fn regex_targets_match_the_whole_path_and_exclusions_win() {
        let s = TargetSelector::new(
            TargetModules::Regex(r".*\.(q|v)_proj".into()),
            Some(names(&["model.layers.0.self_attn.v_proj"])),
            None,
            None,
        )
        .expect("selector");
        assert!(s.selects("model.layers.0.self_attn.q_proj", &[]));
        assert!(s.selects("model.layers.1.self_attn.v_proj", &[]));
        assert!(!s.selects("model.layers.0.self_attn.v_proj", &[]));
        assert!(!s.selects("model.layers.0.self_attn.q_proj.extra", &[]));
        assert!(TargetSelector::new(TargetModules::Regex("(".into()), None, None, None).is_err());
    }

    #[test]
    fn patterns_match_as_peft_first_key_first() {
        let p = Patterns(vec![
            ("layers.0.self_attn.q_proj".to_string(), 8),
            (r"layers\.\d+\.mlp\..*".to_string(), 2),
            ("q_proj".to_string(), 4),
        ]);
        assert_eq!(p.lookup("model.layers.0.self_attn.q_proj"), Some(&8));
        assert_eq!(p.lookup("model.layers.1.self_attn.q_proj"), Some(&4));
        assert_eq!(p.lookup("model.layers.1.mlp.up_proj"), Some(&2));
        // A key matches whole path components at the end, not a suffix of a name.
        assert_eq!(p.lookup("model.layers.1.self_attn.xq_proj"), None);
        assert_eq!(p.lookup("model.layers.1.self_attn.k_proj"), None);
        let ordered: Patterns<usize> =
            serde_json::from_str(r#"{"z_proj": 1, "a_proj": 2}"#).expect("json");
        assert_eq!(ordered.0[0].0, "z_proj", "the order written is kept");
        assert_eq!(Patterns(vec![("(".to_string(), 1)]).invalid_keys().len(), 1);
        assert_eq!(
            p.conflict("model.layers.0.self_attn.q_proj"),
            Some(("layers.0.self_attn.q_proj", "q_proj"))
        );
        assert_eq!(p.conflict("model.layers.1.self_attn.q_proj"), None);
    }

    #[test]
    fn llama_factory_spellings() {
        assert_eq!(
            TargetModules::parse_llama_factory("all"),
            TargetModules::AllLinear
        );
        assert_eq!(
            TargetModules::parse_llama_factory(" q_proj, v_proj "),
            names(&["q_proj", "v_proj"])
        );
    }
}
