//! Plan codecs: Ballista's, wrapped.
//!
//! A custom codec replaces Ballista's own, so ember's wrap and delegate to
//! [`BallistaLogicalExtensionCodec`] and [`BallistaPhysicalExtensionCodec`] (their
//! shuffle and table nodes must keep working). The wrappers are where ember's
//! stateful functions (a model's weights inside `predict`) are encoded and decoded;
//! everything else goes to Ballista.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use ember_ml_ops::functions;

use crate::cluster::{
    EstimatedExec, KeepRowsExec, KeepRowsNode, RefusedExec, decode_spec, encode_spec,
};

/// ember's logical codec: Ballista's, plus ember's stateful functions.
#[derive(Debug, Default)]
pub struct EmberLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for EmberLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        if let Some(spec) = decode_spec(buf) {
            let [input] = inputs else {
                return datafusion::common::plan_err!("KeepRows takes one input");
            };
            return Ok(Extension {
                node: Arc::new(KeepRowsNode::new(input.clone(), spec?)?),
            });
        }
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(keep) = node.node.as_any().downcast_ref::<KeepRowsNode>() {
            return encode_spec(&keep.spec, buf);
        }
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.inner
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match functions::decode_udf(name, buf) {
            Some(decoded) => decoded,
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        match functions::encode_udf(node) {
            Some(bytes) => {
                buf.extend(bytes?);
                Ok(())
            }
            None => self.inner.try_encode_udf(node, buf),
        }
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match functions::decode_udaf(name, buf) {
            Some(decoded) => decoded,
            None => self.inner.try_decode_udaf(name, buf),
        }
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        match functions::encode_udaf(node) {
            Some(bytes) => {
                buf.extend(bytes?);
                Ok(())
            }
            None => self.inner.try_encode_udaf(node, buf),
        }
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

/// ember's physical codec: Ballista's, plus ember's stateful functions.
#[derive(Debug, Default)]
pub struct EmberPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for EmberPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(refused) = RefusedExec::decode(buf) {
            return Ok(Arc::new(refused?));
        }
        if let Some(spec) = decode_spec(buf) {
            let [input] = inputs else {
                return datafusion::common::plan_err!("KeepRowsExec takes one input");
            };
            return Ok(Arc::new(KeepRowsExec::new(input.clone(), spec?)));
        }
        if let [input] = inputs
            && let Some(estimated) = EstimatedExec::decode(buf, input)
        {
            return Ok(Arc::new(estimated));
        }
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(refused) = node.downcast_ref::<RefusedExec>() {
            return refused.encode(buf);
        }
        if let Some(keep) = node.downcast_ref::<KeepRowsExec>() {
            return encode_spec(keep.spec(), buf);
        }
        if let Some(estimated) = node.downcast_ref::<EstimatedExec>() {
            estimated.encode(buf);
            return Ok(());
        }
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match functions::decode_udf(name, buf) {
            Some(decoded) => decoded,
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        match functions::encode_udf(node) {
            Some(bytes) => {
                buf.extend(bytes?);
                Ok(())
            }
            None => self.inner.try_encode_udf(node, buf),
        }
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match functions::decode_udaf(name, buf) {
            Some(decoded) => decoded,
            None => self.inner.try_decode_udaf(name, buf),
        }
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        match functions::encode_udaf(node) {
            Some(bytes) => {
                buf.extend(bytes?);
                Ok(())
            }
            None => self.inner.try_encode_udaf(node, buf),
        }
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}
