package deploy_test

import (
	"path"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
)

const tlsDir = "overlays/tls"

// certificate is what the overlay needs of a cert-manager.io/v1
// Certificate.
type certificate struct {
	APIVersion string `json:"apiVersion"`
	Spec       struct {
		SecretName string   `json:"secretName"`
		DNSNames   []string `json:"dnsNames"`
		IssuerRef  struct {
			Name, Kind, Group string
		} `json:"issuerRef"`
	} `json:"spec"`
}

// Guards the TLS overlay: base with the certificate cert-manager issues
// into a Secret and the users file from another Secret, both projected
// into the config directory, at the paths the pool's tls_cert_file,
// tls_key_file and acl_file name.
func TestTLSOverlay(t *testing.T) {
	objs := render(t, tlsDir)
	var cert certificate
	decodeLoose(t, find(t, objs, "Certificate", "shardproxy-tls"), &cert)
	if cert.APIVersion != "cert-manager.io/v1" || cert.Spec.SecretName == "" || cert.Spec.IssuerRef.Name == "" || !slices.Contains(cert.Spec.DNSNames, "svc-proxy") {
		t.Errorf("Certificate shardproxy-tls = %+v, want cert-manager.io/v1 issuing a Secret for svc-proxy", cert)
	}
	var acl corev1.Secret
	decode(t, find(t, objs, "Secret", "shardproxy-acl"), &acl)
	if _, ok := acl.Data["users.acl"]; !ok {
		t.Errorf("Secret shardproxy-acl has keys %v, want users.acl", acl.Data)
	}
	// The rest is base's, checked as base's is.
	s := loadStack(t, tlsDir)
	t.Run("proxy-security", s.checkProxySecurity)
	t.Run("restricted", func(t *testing.T) { checkRestricted(t, &s.deployment.Spec.Template.Spec) })

	spec := &s.deployment.Spec.Template.Spec
	c := s.proxyContainer(t)
	conf := flagValue(t, c.Args, "-c", "--conf-file")
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.MountPath == path.Dir(conf) {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || mount.SubPath != "" {
		t.Fatalf("mounts %v: none of the whole config directory %s", c.VolumeMounts, path.Dir(conf))
	}
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == mount.Name {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil || vol.Projected == nil || vol.ConfigMap != nil || vol.Secret != nil {
		t.Fatalf("volume %s = %+v, want a projected volume only", mount.Name, vol)
	}
	// files maps each path in the container to the Secret key or
	// ConfigMap it comes from.
	files := map[string]string{}
	for _, src := range vol.Projected.Sources {
		switch {
		case src.ConfigMap != nil:
			if src.ConfigMap.Name != s.configMap.Name || len(src.ConfigMap.Items) > 0 {
				t.Errorf("projected ConfigMap %+v, want all of %s", src.ConfigMap, s.configMap.Name)
			}
			files[conf] = "ConfigMap/" + src.ConfigMap.Name
		case src.Secret != nil:
			for _, it := range src.Secret.Items {
				files[path.Join(mount.MountPath, it.Path)] = src.Secret.Name + "/" + it.Key
			}
		}
	}
	if files[conf] != "ConfigMap/shardproxy-config" {
		t.Errorf("projected files %v: no %s from the ConfigMap", files, conf)
	}

	var pools map[string]map[string]any
	if err := yaml.Unmarshal([]byte(s.configMap.Data[path.Base(conf)]), &pools); err != nil || len(pools) != 1 {
		t.Fatalf("nutcracker.yml: %v, %d pools; want one", err, len(pools))
	}
	for _, pool := range pools {
		for key, want := range map[string]string{
			"tls_cert_file": cert.Spec.SecretName + "/tls.crt",
			"tls_key_file":  cert.Spec.SecretName + "/tls.key",
			"acl_file":      "shardproxy-acl/users.acl",
		} {
			p, _ := pool[key].(string)
			if p == "" || files[p] != want {
				t.Errorf("%s: %q, which the volume fills from %q; want %s", key, p, files[p], want)
			}
		}
		if p, ok := pool["tls_client_ca_file"].(string); ok && files[p] != cert.Spec.SecretName+"/ca.crt" {
			t.Errorf("tls_client_ca_file: %q, which the volume fills from %q; want %s/ca.crt", p, files[p], cert.Spec.SecretName)
		}
	}
}
