//! `predict('model', inputs...)` and `predict_proba('model', inputs...)`.
//!
//! As written in SQL the functions are *unbound*: they name a model. Before a
//! statement is planned the client loads the named models into a
//! [`ModelCatalog`], which gives the calls their types and checks their
//! arguments; the engine then replaces each call by a *bound* one that carries
//! the model's parameters and takes the model's features (its TRANSFORM inlined
//! as ordinary expressions). Bound functions travel to executors inside the plan
//! through ember's codecs, so executors never read the model store.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr_common::utils::scatter;
use serde::{Deserialize, Serialize};

use crate::kernels::FeatureColumns;
use crate::models::{BoundModel, Model, PredictOutput};

/// Models loaded for the statement being planned, by name.
pub type ModelCatalog = Arc<RwLock<HashMap<String, Arc<Model>>>>;

#[derive(Debug, Clone)]
enum Binding {
    Unbound(ModelCatalog),
    Bound(Arc<BoundModel>),
}

/// `predict` / `predict_proba`, unbound or bound.
#[derive(Debug, Clone)]
pub struct PredictFunc {
    output: PredictOutput,
    binding: Binding,
    signature: Signature,
}

impl PartialEq for PredictFunc {
    fn eq(&self, other: &Self) -> bool {
        self.output == other.output
            && match (&self.binding, &other.binding) {
                (Binding::Unbound(a), Binding::Unbound(b)) => Arc::ptr_eq(a, b),
                (Binding::Bound(a), Binding::Bound(b)) => a == b,
                _ => false,
            }
    }
}

impl Eq for PredictFunc {}

impl Hash for PredictFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.output.hash(state);
        if let Binding::Bound(model) = &self.binding {
            model.name.hash(state);
            model.display.hash(state);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Encoded {
    output: PredictOutput,
    model: BoundModel,
}

impl PredictFunc {
    /// The unbound function, resolving model names in `catalog`.
    pub fn unbound(output: PredictOutput, catalog: ModelCatalog) -> Self {
        Self {
            output,
            binding: Binding::Unbound(catalog),
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// The function bound to `model`.
    pub fn bound(output: PredictOutput, model: BoundModel) -> Self {
        Self {
            output,
            binding: Binding::Bound(Arc::new(model)),
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// Which of the two functions this is.
    pub fn output(&self) -> PredictOutput {
        self.output
    }

    /// The model a bound call carries.
    pub fn bound_model(&self) -> Option<&BoundModel> {
        match &self.binding {
            Binding::Bound(model) => Some(model),
            Binding::Unbound(_) => None,
        }
    }

    /// Serialized form of a bound call, for the plan codecs.
    pub fn to_bytes(&self) -> Option<Result<Vec<u8>>> {
        let model = self.bound_model()?.clone();
        Some(
            serde_json::to_vec(&Encoded {
                output: self.output,
                model,
            })
            .map_err(|e| datafusion::error::DataFusionError::External(e.into())),
        )
    }

    /// Inverse of [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let encoded: Encoded = serde_json::from_slice(bytes)
            .map_err(|e| datafusion::error::DataFusionError::External(e.into()))?;
        Ok(Self::bound(encoded.output, encoded.model))
    }

    /// The model an unbound call names, checked against its arguments.
    fn resolve(&self, catalog: &ModelCatalog, args: &ReturnFieldArgs) -> Result<Arc<Model>> {
        let name = self.output.name();
        let model_name = match args.scalar_arguments.first() {
            Some(Some(ScalarValue::Utf8(Some(n))))
            | Some(Some(ScalarValue::LargeUtf8(Some(n))))
            | Some(Some(ScalarValue::Utf8View(Some(n)))) => n.to_ascii_lowercase(),
            _ => {
                return plan_err!(
                    "{name}('model', inputs...) needs the model name as a string literal first"
                );
            }
        };
        let model = catalog
            .read()
            .map_err(|_| {
                datafusion::error::DataFusionError::Internal("model catalog poisoned".into())
            })?
            .get(&model_name)
            .cloned();
        let Some(model) = model else {
            return plan_err!("unknown model '{model_name}'");
        };
        let given = &args.arg_fields[1..];
        if given.len() != model.inputs.len() {
            let names: Vec<&str> = model.inputs.iter().map(|i| i.name.as_str()).collect();
            return plan_err!(
                "model '{model_name}' takes {} inputs ({}), got {}",
                names.len(),
                names.join(", "),
                given.len()
            );
        }
        for (i, (field, input)) in given.iter().zip(&model.inputs).enumerate() {
            let want = kind_of_name(&input.data_type);
            let got = kind_of(field.data_type());
            if want != got && got != Kind::Null {
                return plan_err!(
                    "model '{model_name}' input {} ('{}') must be {} ({} in training), got {}",
                    i + 1,
                    input.name,
                    want.describe(),
                    input.data_type,
                    field.data_type()
                );
            }
        }
        Ok(model)
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    Number,
    Text,
    Null,
    Other,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Text => "text",
            Kind::Null => "NULL",
            Kind::Other => "of the training type",
        }
    }
}

fn kind_of(t: &DataType) -> Kind {
    match t {
        DataType::Null => Kind::Null,
        t if t.is_numeric() || *t == DataType::Boolean => Kind::Number,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
        _ => Kind::Other,
    }
}

fn kind_of_name(name: &str) -> Kind {
    match name {
        "Utf8" | "LargeUtf8" | "Utf8View" => Kind::Text,
        "Boolean" => Kind::Number,
        n if n.starts_with("Int")
            || n.starts_with("UInt")
            || n.starts_with("Float")
            || n.starts_with("Decimal") =>
        {
            Kind::Number
        }
        _ => Kind::Other,
    }
}

impl ScalarUDFImpl for PredictFunc {
    fn name(&self) -> &str {
        self.output.name()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match &self.binding {
            Binding::Bound(model) => Ok(model.display.clone()),
            Binding::Unbound(_) => {
                let args: Vec<String> = args.iter().map(|a| a.schema_name().to_string()).collect();
                Ok(format!("{}({})", self.name(), args.join(",")))
            }
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("{} is typed from its arguments", self.name())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data_type = match &self.binding {
            Binding::Unbound(catalog) => {
                let model = self.resolve(catalog, &args)?;
                model.model_type.output_type(
                    self.output,
                    &model.name,
                    model.label_type.as_deref(),
                )?
            }
            Binding::Bound(model) => model.model_type.output_type(
                self.output,
                &model.name,
                model.label_type.as_deref(),
            )?,
        };
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Binding::Bound(model) = &self.binding else {
            return exec_err!("{}: the model was not bound into the plan", self.name());
        };
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        // A row with a NULL feature has no prediction (NULL), as in BigQuery ML
        // and Spark, unless the model takes NULLs (trees); the others are
        // predicted as usual.
        if model.model_type.takes_nulls() {
            return Ok(ColumnarValue::Array(self.predict_rows(model, &arrays)?));
        }
        let complete = complete_rows(&arrays, rows);
        if let Some(complete) = &complete {
            let kept = arrays
                .iter()
                .map(|a| Ok(filter(a.as_ref(), complete)?))
                .collect::<Result<Vec<_>>>()?;
            let predicted = self.predict_rows(model, &kept)?;
            // One value per complete row, placed at those rows; NULL elsewhere.
            return Ok(ColumnarValue::Array(scatter(complete, predicted.as_ref())?));
        }
        Ok(ColumnarValue::Array(self.predict_rows(model, &arrays)?))
    }
}

impl PredictFunc {
    /// Predictions for rows without NULL features.
    fn predict_rows(&self, model: &BoundModel, arrays: &[ArrayRef]) -> Result<ArrayRef> {
        let columns = FeatureColumns::new(arrays, &model.features)?;
        if columns.width() != model.width {
            return exec_err!(
                "model '{}' expects {} feature values per row, got {}",
                model.name,
                model.width,
                columns.width()
            );
        }
        model.model_type.predict(model, self.output, &columns)
    }
}

/// Which rows have every feature (a vector's every element) present; `None`
/// when all do.
fn complete_rows(arrays: &[ArrayRef], rows: usize) -> Option<BooleanArray> {
    let mut complete: Option<Vec<bool>> = None;
    for array in arrays {
        let vector = array.as_fixed_size_list_opt();
        let element_nulls = vector.is_some_and(|v| v.values().logical_null_count() > 0);
        // Logical: a NULL literal is a NullArray, whose nulls are not physical.
        let nulls = array.logical_nulls();
        if nulls.as_ref().is_none_or(|n| n.null_count() == 0) && !element_nulls {
            continue;
        }
        let mask = complete.get_or_insert_with(|| vec![true; rows]);
        for (r, keep) in mask.iter_mut().enumerate() {
            let missing = nulls.as_ref().is_some_and(|n| n.is_null(r))
                || vector.is_some_and(|v| element_nulls && v.value(r).logical_null_count() > 0);
            if missing {
                *keep = false;
            }
        }
    }
    complete.map(BooleanArray::from)
}
