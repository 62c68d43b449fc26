package deploycheck

// Custom resources the Helm chart renders (KEDA's ScaledObject and
// TriggerAuthentication, the Prometheus Operator's ServiceMonitor) are checked
// against the CRDs kept in testdata/crds, the way kube-apiserver checks a custom
// resource on create with fieldValidation=Strict:
//
//	decode        YAML → JSON with duplicate keys refused, numbers as int64/float64
//	metadata      strict ObjectMeta decoding (unknown fields), ValidateObjectMeta
//	prune         structural-schema pruning; every pruned (unknown) field is an error
//	default       structural defaulting
//	validate      the OpenAPI schema validator (types, enums, required, patterns),
//	              embedded ObjectMeta, list-type set/map invariants, and the CRD's
//	              x-kubernetes-validations CEL rules
//
// All of it is k8s.io/apiextensions-apiserver's own code, at the version go.mod
// requires.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// crdFiles are the CRDs in testdata/crds, each with a first-line comment naming
// where it was copied from.
var crdFiles = []string{
	"keda.sh_scaledobjects.yaml",
	"keda.sh_triggerauthentications.yaml",
	"monitoring.coreos.com_servicemonitors.yaml",
}

// crdVersionValidator validates custom resources of one served version of a CRD.
type crdVersionValidator struct {
	gvk        schema.GroupVersionKind
	namespaced bool
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator // nil when the schema has no x-kubernetes-validations
}

var (
	crdOnce       sync.Once
	crdValidators map[schema.GroupVersionKind]*crdVersionValidator
	crdLoadErr    error
)

// crdRegistry loads every CRD in testdata/crds once.
func crdRegistry(t testing.TB) map[schema.GroupVersionKind]*crdVersionValidator {
	t.Helper()
	crdOnce.Do(func() {
		crdValidators = map[schema.GroupVersionKind]*crdVersionValidator{}
		for _, f := range crdFiles {
			vs, err := crdLoad(filepath.Join("testdata", "crds", f))
			if err != nil {
				crdLoadErr = fmt.Errorf("%s: %w", f, err)
				return
			}
			for _, v := range vs {
				crdValidators[v.gvk] = v
			}
		}
	})
	if crdLoadErr != nil {
		t.Fatal(crdLoadErr)
	}
	return crdValidators
}

// crdLoad reads a CRD file and builds a validator for each served version.
func crdLoad(path string) ([]*crdVersionValidator, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	if !strings.HasPrefix(first, "# ") {
		return nil, fmt.Errorf("first line must be a comment naming the CRD's origin and version, got %q", first)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
		return nil, err
	}
	if crd.Kind != "CustomResourceDefinition" {
		return nil, fmt.Errorf("kind %q, want CustomResourceDefinition", crd.Kind)
	}
	var out []*crdVersionValidator
	for _, ver := range crd.Spec.Versions {
		if !ver.Served {
			continue
		}
		if ver.Schema == nil || ver.Schema.OpenAPIV3Schema == nil {
			return nil, fmt.Errorf("version %s has no openAPIV3Schema", ver.Name)
		}
		internal := &apiextensions.JSONSchemaProps{}
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(ver.Schema.OpenAPIV3Schema, internal, nil); err != nil {
			return nil, fmt.Errorf("version %s: converting the schema: %w", ver.Name, err)
		}
		ss, err := structuralschema.NewStructural(internal)
		if err != nil {
			return nil, fmt.Errorf("version %s: structural schema: %w", ver.Name, err)
		}
		if errs := structuralschema.ValidateStructural(nil, ss); len(errs) > 0 {
			return nil, fmt.Errorf("version %s: schema is not structural: %v", ver.Name, errs.ToAggregate())
		}
		sv, _, err := apiservervalidation.NewSchemaValidator(internal)
		if err != nil {
			return nil, fmt.Errorf("version %s: schema validator: %w", ver.Name, err)
		}
		out = append(out, &crdVersionValidator{
			gvk:        schema.GroupVersionKind{Group: crd.Spec.Group, Version: ver.Name, Kind: crd.Spec.Names.Kind},
			namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
			structural: ss,
			schema:     sv,
			cel:        cel.NewValidator(ss, true, celconfig.PerCallLimit),
		})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no served version")
	}
	return out, nil
}

// crdDecode turns one YAML document into the unstructured form the API server
// works on: duplicate keys are an error, whole numbers are int64.
func crdDecode(doc []byte) (map[string]any, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(js, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, fmt.Errorf("empty document")
	}
	return obj, nil
}

// crdValidate checks one custom resource; namespace stands for the request's
// namespace (helm template leaves metadata.namespace out). It returns every
// problem found, empty when the API server would accept the object.
func crdValidate(t testing.TB, obj map[string]any, namespace string) []string {
	t.Helper()
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return []string{fmt.Sprintf("apiVersion %q: %v", apiVersion, err)}
	}
	v, ok := crdRegistry(t)[gv.WithKind(kind)]
	if !ok {
		return []string{fmt.Sprintf("no CRD in testdata/crds serves %s %s", apiVersion, kind)}
	}
	var problems []string
	add := func(errs field.ErrorList) {
		for _, e := range errs {
			problems = append(problems, e.Error())
		}
	}

	// Unknown fields: metadata (strict decoding), then everything the structural
	// schema prunes, then embedded ObjectMeta.
	meta, found, unknown, err := schemaobjectmeta.GetObjectMetaWithOptions(obj, schemaobjectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		return append(problems, fmt.Sprintf("metadata: %v", err))
	}
	if !found {
		return append(problems, "metadata: missing")
	}
	unknown = append(unknown, structuralpruning.PruneWithOptions(obj, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, v.structural)
	ferr, paths := schemaobjectmeta.CoerceWithOptions(nil, obj, v.structural, false, schemaobjectmeta.CoerceOptions{ReturnUnknownFieldPaths: true})
	if ferr != nil {
		problems = append(problems, ferr.Error())
	}
	unknown = append(unknown, paths...)
	sort.Strings(unknown)
	for _, p := range unknown {
		problems = append(problems, fmt.Sprintf("unknown field %q", p))
	}

	// Defaulting, then validation, as on create.
	structuraldefaulting.Default(obj, v.structural)
	if v.namespaced && meta.Namespace == "" {
		meta.Namespace = namespace
	}
	add(apimachineryvalidation.ValidateObjectMeta(meta, v.namespaced, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata")))
	add(apiservervalidation.ValidateCustomResource(nil, obj, v.schema))
	add(schemaobjectmeta.Validate(context.Background(), nil, obj, v.structural, false))
	add(listtype.ValidateListSetsAndMaps(nil, v.structural, obj))
	if v.cel != nil && len(problems) == 0 { // as the API server: CEL only when nothing else failed
		errs, _ := v.cel.Validate(context.Background(), nil, v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
		add(errs)
	}
	return problems
}

func TestCRDFilesLoad(t *testing.T) {
	reg := crdRegistry(t)
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"},
		{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"},
		{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"},
	} {
		if _, ok := reg[gvk]; !ok {
			t.Errorf("testdata/crds serves no %s", gvk)
		}
	}
	if reg[schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}].cel == nil {
		t.Error("ScaledObject's CRD has x-kubernetes-validations, but no CEL validator was built")
	}
}

const crdGoodScaledObject = `
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: farm-worker-digits
  labels:
    app.kubernetes.io/name: warren
spec:
  scaleTargetRef:
    name: farm-worker-digits
  minReplicaCount: 1
  maxReplicaCount: 10
  triggers:
    - type: metrics-api
      metricType: AverageValue
      metadata:
        url: http://farm-api.ns.svc:8000/capacity?model=digits
        valueLocation: workers_needed
        targetValue: "1"
`

// TestCRDValidatorAcceptsGood is the control for the failure cases below.
func TestCRDValidatorAcceptsGood(t *testing.T) {
	obj, err := crdDecode([]byte(crdGoodScaledObject))
	if err != nil {
		t.Fatal(err)
	}
	if problems := crdValidate(t, obj, "ns"); len(problems) > 0 {
		t.Fatalf("a valid ScaledObject was refused:\n%s", strings.Join(problems, "\n"))
	}
}

// TestCRDValidatorRefusesBad shows that the validator can fail: each case breaks
// the good ScaledObject (or a ServiceMonitor) in one way and must see an error
// naming it.
func TestCRDValidatorRefusesBad(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"unknown spec field", "  minReplicaCount: 1\n", "  minReplicaCount: 1\n  minReplicas: 1\n", `unknown field "spec.minReplicas"`},
		{"unknown nested field", "    name: farm-worker-digits\n", "    name: farm-worker-digits\n    replicas: 3\n", `unknown field "spec.scaleTargetRef.replicas"`},
		{"unknown metadata field", "  name: farm-worker-digits\n", "  name: farm-worker-digits\n  namespaces: x\n", `unknown field "metadata.namespaces"`},
		{"wrong type: string for integer", "maxReplicaCount: 10", `maxReplicaCount: "ten"`, "spec.maxReplicaCount"},
		{"wrong type: number in trigger metadata", `targetValue: "1"`, `targetValue: 1`, "spec.triggers[0].metadata.targetValue"},
		{"enum", "      metricType: AverageValue\n", "      metricType: AverageValue\n      authenticationRef: {name: x, kind: SecretAuth}\n", "spec.triggers[0].authenticationRef.kind"},
		{"minimum", "  minReplicaCount: 1\n", "  minReplicaCount: 1\n  cooldownPeriod: -1\n", "spec.cooldownPeriod"},
		{"required field missing", "    - type: metrics-api\n      metricType", "    - metricType", "spec.triggers[0].type"},
		{"CEL rule (min > max)", "minReplicaCount: 1", "minReplicaCount: 11", "minReplicaCount must be less than or equal to maxReplicaCount"},
		{"duplicate key", "  minReplicaCount: 1\n", "  minReplicaCount: 1\n  minReplicaCount: 2\n", "already set in map"},
		{"bad label value", "app.kubernetes.io/name: warren", "app.kubernetes.io/name: -warren-", "metadata.labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(crdGoodScaledObject, tc.from) {
				t.Fatalf("test bug: %q not in the good object", tc.from)
			}
			doc := strings.Replace(crdGoodScaledObject, tc.from, tc.to, 1)
			var problems []string
			obj, err := crdDecode([]byte(doc))
			if err != nil {
				problems = []string{err.Error()}
			} else {
				problems = crdValidate(t, obj, "ns")
			}
			if len(problems) == 0 {
				t.Fatalf("accepted:\n%s", doc)
			}
			joined := strings.Join(problems, "\n")
			if !strings.Contains(joined, tc.want) {
				t.Fatalf("errors do not mention %q:\n%s", tc.want, joined)
			}
		})
	}

	t.Run("ServiceMonitor wrong interval and unknown endpoint field", func(t *testing.T) {
		obj, err := crdDecode([]byte(`
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: farm-api}
spec:
  selector: {matchLabels: {app: x}}
  endpoints:
    - port: http
      interval: 15 seconds
      scrapePath: /metrics
`))
		if err != nil {
			t.Fatal(err)
		}
		joined := strings.Join(crdValidate(t, obj, "ns"), "\n")
		for _, want := range []string{`unknown field "spec.endpoints[0].scrapePath"`, "spec.endpoints[0].interval"} {
			if !strings.Contains(joined, want) {
				t.Errorf("errors do not mention %q:\n%s", want, joined)
			}
		}
	})

	t.Run("no CRD for the kind", func(t *testing.T) {
		obj, err := crdDecode([]byte("apiVersion: keda.sh/v1alpha1\nkind: ScaledJob\nmetadata: {name: x}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if problems := crdValidate(t, obj, "ns"); len(problems) == 0 {
			t.Fatal("a kind without a CRD was accepted")
		}
	})
}
