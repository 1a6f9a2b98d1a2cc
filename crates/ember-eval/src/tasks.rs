//! The benchmark tasks and groups, named as lm-evaluation-harness names them (v0.4.9.2
//! `lm_eval/tasks/{kmmlu/default,kobest,haerae}`), and turning task or group names into a selection.

use crate::EvalError;

/// A per-document metric and its task-level aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Mean of `argmax(ll) == gold`.
    Acc,
    /// Mean of `argmax(ll / len_chars(choice)) == gold`.
    AccNorm,
    /// sklearn's macro F1 over the task's (gold, pred) pairs.
    F1,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::AccNorm => "acc_norm",
            Metric::F1 => "f1",
        }
    }
}

/// KMMLU's four category groups (`kmmlu_<tag>_tasks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KmmluCategory {
    Stem,
    Other,
    AppliedScience,
    Humss,
}

impl KmmluCategory {
    pub const ALL: [KmmluCategory; 4] = [
        KmmluCategory::Stem,
        KmmluCategory::Other,
        KmmluCategory::AppliedScience,
        KmmluCategory::Humss,
    ];

    /// The lm-eval group name.
    pub fn group(self) -> &'static str {
        match self {
            KmmluCategory::Stem => "kmmlu_stem",
            KmmluCategory::Other => "kmmlu_other",
            KmmluCategory::AppliedScience => "kmmlu_applied_science",
            KmmluCategory::Humss => "kmmlu_humss",
        }
    }
}

/// The five KoBEST tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kobest {
    Boolq,
    Copa,
    Hellaswag,
    Sentineg,
    Wic,
}

impl Kobest {
    pub const ALL: [Kobest; 5] = [
        Kobest::Boolq,
        Kobest::Copa,
        Kobest::Hellaswag,
        Kobest::Sentineg,
        Kobest::Wic,
    ];

    /// The folder of the distributed TSVs (`KoBEST_datarepo/v1.0/<folder>/`).
    pub fn folder(self) -> &'static str {
        match self {
            Kobest::Boolq => "BoolQ",
            Kobest::Copa => "COPA",
            Kobest::Hellaswag => "HellaSwag",
            Kobest::Sentineg => "SentiNeg",
            Kobest::Wic => "WiC",
        }
    }

    fn task_name(self) -> &'static str {
        match self {
            Kobest::Boolq => "kobest_boolq",
            Kobest::Copa => "kobest_copa",
            Kobest::Hellaswag => "kobest_hellaswag",
            Kobest::Sentineg => "kobest_sentineg",
            Kobest::Wic => "kobest_wic",
        }
    }
}

/// What a task reads and how it renders a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// `subject` is the HF config name (`Criminal-Law`), which also names the data files.
    Kmmlu {
        subject: &'static str,
        category: KmmluCategory,
    },
    Kobest(Kobest),
    /// `subset` is the HF config name (`general_knowledge`, `loan_words`, ...).
    Haerae {
        subset: &'static str,
    },
}

/// One lm-eval task.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Task {
    pub name: String,
    pub kind: TaskKind,
}

impl Task {
    /// The metrics lm-eval's YAML lists for this task, in its order.
    pub fn metrics(&self) -> &'static [Metric] {
        match self.kind {
            TaskKind::Kmmlu { .. } => &[Metric::Acc],
            TaskKind::Kobest(Kobest::Hellaswag) => &[Metric::Acc, Metric::AccNorm, Metric::F1],
            TaskKind::Kobest(_) => &[Metric::Acc, Metric::F1],
            TaskKind::Haerae { .. } => &[Metric::Acc, Metric::AccNorm],
        }
    }

    /// Whether the few-shot pool is the evaluated split itself (HAE-RAE), in which case lm-eval
    /// draws one extra document and drops the one being evaluated.
    pub fn fewshot_from_eval_split(&self) -> bool {
        matches!(self.kind, TaskKind::Haerae { .. })
    }
}

/// How a group averages its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weighting {
    /// lm-eval's `weight_by_size: true`: a mean over all member documents.
    BySize,
    /// An unweighted mean over members (the KMMLU paper's number; not an lm-eval group).
    Macro,
}

/// A group of tasks and the metrics it aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    pub name: String,
    /// Leaf task names.
    pub members: Vec<String>,
    pub metrics: Vec<Metric>,
    pub weighting: Weighting,
}

/// Name of the macro average over KMMLU subjects that the KMMLU paper reports.
pub const KMMLU_MACRO: &str = "kmmlu_macro";

/// The 45 KMMLU subjects: HF config name, lm-eval task name, category (`default/*.yaml`).
pub const KMMLU_SUBJECTS: [(&str, &str, KmmluCategory); 45] = {
    use KmmluCategory::{AppliedScience as A, Humss as H, Other as O, Stem as S};
    [
        ("Accounting", "kmmlu_accounting", H),
        ("Agricultural-Sciences", "kmmlu_agricultural_sciences", O),
        (
            "Aviation-Engineering-and-Maintenance",
            "kmmlu_aviation_engineering_and_maintenance",
            A,
        ),
        ("Biology", "kmmlu_biology", S),
        ("Chemical-Engineering", "kmmlu_chemical_engineering", S),
        ("Chemistry", "kmmlu_chemistry", S),
        ("Civil-Engineering", "kmmlu_civil_engineering", S),
        ("Computer-Science", "kmmlu_computer_science", S),
        ("Construction", "kmmlu_construction", O),
        ("Criminal-Law", "kmmlu_criminal_law", H),
        ("Ecology", "kmmlu_ecology", S),
        ("Economics", "kmmlu_economics", H),
        ("Education", "kmmlu_education", H),
        ("Electrical-Engineering", "kmmlu_electrical_engineering", S),
        (
            "Electronics-Engineering",
            "kmmlu_electronics_engineering",
            A,
        ),
        ("Energy-Management", "kmmlu_energy_management", A),
        ("Environmental-Science", "kmmlu_environmental_science", A),
        ("Fashion", "kmmlu_fashion", O),
        ("Food-Processing", "kmmlu_food_processing", O),
        (
            "Gas-Technology-and-Engineering",
            "kmmlu_gas_technology_and_engineering",
            A,
        ),
        ("Geomatics", "kmmlu_geomatics", A),
        ("Health", "kmmlu_health", O),
        ("Industrial-Engineer", "kmmlu_industrial_engineer", A),
        ("Information-Technology", "kmmlu_information_technology", S),
        (
            "Interior-Architecture-and-Design",
            "kmmlu_interior_architecture_and_design",
            O,
        ),
        ("Korean-History", "kmmlu_korean_history", H),
        ("Law", "kmmlu_law", H),
        (
            "Machine-Design-and-Manufacturing",
            "kmmlu_machine_design_and_manufacturing",
            A,
        ),
        ("Management", "kmmlu_management", H),
        ("Maritime-Engineering", "kmmlu_maritime_engineering", A),
        ("Marketing", "kmmlu_marketing", O),
        ("Materials-Engineering", "kmmlu_materials_engineering", S),
        ("Math", "kmmlu_math", S),
        ("Mechanical-Engineering", "kmmlu_mechanical_engineering", S),
        ("Nondestructive-Testing", "kmmlu_nondestructive_testing", A),
        ("Patent", "kmmlu_patent", O),
        (
            "Political-Science-and-Sociology",
            "kmmlu_political_science_and_sociology",
            H,
        ),
        ("Psychology", "kmmlu_psychology", H),
        ("Public-Safety", "kmmlu_public_safety", O),
        (
            "Railway-and-Automotive-Engineering",
            "kmmlu_railway_and_automotive_engineering",
            A,
        ),
        ("Real-Estate", "kmmlu_real_estate", O),
        (
            "Refrigerating-Machinery",
            "kmmlu_refrigerating_machinery",
            O,
        ),
        ("Social-Welfare", "kmmlu_social_welfare", H),
        ("Taxation", "kmmlu_taxation", H),
        (
            "Telecommunications-and-Wireless-Technology",
            "kmmlu_telecommunications_and_wireless_technology",
            A,
        ),
    ]
};

/// HAE-RAE subsets: HF config name and lm-eval task name (`haerae_*.yaml`, in `_haerae.yaml` order).
pub const HAERAE_SUBSETS: [(&str, &str); 5] = [
    ("general_knowledge", "haerae_general_knowledge"),
    ("history", "haerae_history"),
    ("loan_words", "haerae_loan_word"),
    ("rare_words", "haerae_rare_word"),
    ("standard_nomenclature", "haerae_standard_nomenclature"),
];

/// Every task, in group order: KoBEST, KMMLU, HAE-RAE.
pub fn all_tasks() -> Vec<Task> {
    let kobest = Kobest::ALL.iter().map(|&k| Task {
        name: k.task_name().to_string(),
        kind: TaskKind::Kobest(k),
    });
    let kmmlu = KMMLU_SUBJECTS
        .iter()
        .map(|&(subject, name, category)| Task {
            name: name.to_string(),
            kind: TaskKind::Kmmlu { subject, category },
        });
    let haerae = HAERAE_SUBSETS.iter().map(|&(subset, name)| Task {
        name: name.to_string(),
        kind: TaskKind::Haerae { subset },
    });
    kobest.chain(kmmlu).chain(haerae).collect()
}

/// Every group: lm-eval's (`kobest`, `haerae`, `kmmlu` and its four categories) and the KMMLU
/// macro average.
pub fn all_groups() -> Vec<Group> {
    let tasks = all_tasks();
    let names = |pred: &dyn Fn(&TaskKind) -> bool| -> Vec<String> {
        tasks
            .iter()
            .filter(|t| pred(&t.kind))
            .map(|t| t.name.clone())
            .collect()
    };
    let mut groups = vec![Group {
        name: "kobest".into(),
        members: names(&|k| matches!(k, TaskKind::Kobest(_))),
        metrics: vec![Metric::Acc, Metric::AccNorm, Metric::F1],
        weighting: Weighting::BySize,
    }];
    let kmmlu = names(&|k| matches!(k, TaskKind::Kmmlu { .. }));
    groups.push(Group {
        name: "kmmlu".into(),
        members: kmmlu.clone(),
        metrics: vec![Metric::Acc],
        weighting: Weighting::BySize,
    });
    for cat in KmmluCategory::ALL {
        groups.push(Group {
            name: cat.group().into(),
            members: names(&|k| matches!(k, TaskKind::Kmmlu { category, .. } if *category == cat)),
            metrics: vec![Metric::Acc],
            weighting: Weighting::BySize,
        });
    }
    groups.push(Group {
        name: KMMLU_MACRO.into(),
        members: kmmlu,
        metrics: vec![Metric::Acc],
        weighting: Weighting::Macro,
    });
    groups.push(Group {
        name: "haerae".into(),
        members: names(&|k| matches!(k, TaskKind::Haerae { .. })),
        metrics: vec![Metric::Acc, Metric::AccNorm],
        weighting: Weighting::BySize,
    });
    groups
}

/// The tasks to run and the groups to report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub tasks: Vec<Task>,
    pub groups: Vec<Group>,
}

/// Resolves task and group names (`kobest`, `kmmlu`, `kobest_copa`, `kmmlu_stem`, ...). Naming
/// `kmmlu` also reports its four categories and [`KMMLU_MACRO`]. Duplicates are dropped; the
/// order is the order of first mention.
pub fn select<S: AsRef<str>>(names: &[S]) -> Result<Selection, EvalError> {
    let tasks = all_tasks();
    let groups = all_groups();
    let mut sel = Selection::default();
    let add_group = |sel: &mut Selection, g: &Group| {
        for m in &g.members {
            if !sel.tasks.iter().any(|t| &t.name == m)
                && let Some(t) = tasks.iter().find(|t| &t.name == m)
            {
                sel.tasks.push(t.clone());
            }
        }
        if !sel.groups.contains(g) {
            sel.groups.push(g.clone());
        }
    };
    for raw in names {
        let name = raw.as_ref().trim();
        if name.is_empty() {
            continue;
        }
        if let Some(g) = groups.iter().find(|g| g.name == name) {
            add_group(&mut sel, g);
            if name == "kmmlu" {
                for sub in groups.iter().filter(|g| g.name.starts_with("kmmlu_")) {
                    add_group(&mut sel, sub);
                }
            }
        } else if let Some(t) = tasks.iter().find(|t| t.name == name) {
            if !sel.tasks.contains(t) {
                sel.tasks.push(t.clone());
            }
        } else {
            return Err(EvalError::UnknownTask {
                name: name.to_string(),
            });
        }
    }
    if sel.tasks.is_empty() {
        // An empty table would look like a result.
        return Err(EvalError::NoTasks);
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_selection_is_an_error() {
        for names in [vec![], vec![""], vec![" ", ""]] {
            let e = select(&names)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("no task selected") && e.contains("kobest"),
                "{names:?}: {e}"
            );
        }
    }

    #[test]
    fn group_sizes_match_lm_eval() {
        let groups = all_groups();
        let size = |n: &str| groups.iter().find(|g| g.name == n).map(|g| g.members.len());
        assert_eq!(size("kobest"), Some(5));
        assert_eq!(size("haerae"), Some(5));
        assert_eq!(size("kmmlu"), Some(45));
        // Category sizes from the tags in lm_eval/tasks/kmmlu/default/*.yaml.
        assert_eq!(size("kmmlu_stem"), Some(11));
        assert_eq!(size("kmmlu_applied_science"), Some(12));
        assert_eq!(size("kmmlu_humss"), Some(11));
        assert_eq!(size("kmmlu_other"), Some(11));
    }

    #[test]
    fn selecting_kmmlu_brings_categories_and_macro() {
        let sel = select(&["kmmlu"]).expect("known group");
        assert_eq!(sel.tasks.len(), 45);
        let names: Vec<&str> = sel.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kmmlu",
                "kmmlu_stem",
                "kmmlu_other",
                "kmmlu_applied_science",
                "kmmlu_humss",
                KMMLU_MACRO
            ]
        );
    }

    #[test]
    fn mixes_groups_and_tasks_without_duplicates() {
        let sel = select(&["kobest_copa", "kobest", "haerae_history"]).expect("known names");
        let names: Vec<&str> = sel.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kobest_copa",
                "kobest_boolq",
                "kobest_hellaswag",
                "kobest_sentineg",
                "kobest_wic",
                "haerae_history"
            ]
        );
        assert_eq!(sel.groups.len(), 1);
        assert!(matches!(
            select(&["kobest_nope"]),
            Err(EvalError::UnknownTask { .. })
        ));
    }
}
