//! Seed 003, continued: the handbook's "scenes to be used" (from Ahmet Alp
//! Balkan's Kubernetes Network Policy Recipes), each with its `kubectl run`
//! as the handbook writes it. The recipes test from throw-away pods and end
//! by deleting what they made (`kubectl delete pod,service web`, the
//! policy); the handbook leaves both out, the replay does them, so that each
//! recipe starts from a namespace default without the previous one's web pod
//! and policy. A LoadBalancer cannot be probed here (the lab replay checks
//! web-allow-external from outside).

use crate::handbook::{wget_nginx, CLIENT, FRONT_END, NGINX};
use crate::replay::{allowed, blocked, Replay};

const WEB: &str = "default/web";
const PROD_CLIENT: &str = "production/client";
const TEST_CLIENT: &str = "testing/client";

/// `kubectl delete pod,service NAME` (and the policy) in `namespace`: a
/// recipe's cleanup.
fn cleanup(r: &Replay<'_>, namespace: &str, objects: &[&str]) {
    let mut args = vec!["delete", "-n", namespace];
    args.extend(objects);
    r.k(&args);
}

/// The recipes, in the handbook's order.
pub fn replay(r: &mut Replay<'_>) {
    r.step(
        "Prohibit access to specified services: kubectl run web --labels app=web,env=prod --expose",
        |r| {
            // Not in the handbook: the simple example's objects go first.
            cleanup(
                r,
                "default",
                &[
                    "networkpolicy/default-deny",
                    "networkpolicy/access-nginx",
                    "networkpolicy/front-end-access",
                    "pod/busybox",
                ],
            );
            cleanup(r, "sock-shop", &["networkpolicy/front-end-access"]);
            r.k(&[
                "run",
                "web",
                "--image=nginx",
                "--labels",
                "app=web,env=prod",
                "--expose",
                "--port",
                "80",
            ]);
            r.running("default", &["web"]);
        },
        &[allowed(CLIENT, WEB, "80", "before web-deny-all")],
    );
    r.step(
        "web-deny-all",
        |r| r.apply("web-deny-all.yaml"),
        &[
            blocked(CLIENT, WEB, "80", "any pod of default to web"),
            blocked(
                PROD_CLIENT,
                WEB,
                "80",
                "any pod of another namespace to web",
            ),
            allowed("default/web", CLIENT, "80", "web's egress is open"),
        ],
    );

    r.step(
        "Only allow Pod access service: kubectl run apiserver --labels app=bookstore,role=api --expose; api-allow",
        |r| {
            cleanup(r, "default", &["pod/web", "service/web", "networkpolicy/web-deny-all"]);
            r.k(&["run", "apiserver", "--image=nginx", "--labels", "app=bookstore,role=api", "--expose", "--port", "80"]);
            // The recipe's client: `kubectl run test-$RANDOM --rm -i -t
            // --image=alpine --labels app=bookstore,role=frontend -- sh`.
            r.k(&["run", "bookstore-frontend", "--image=alpine", "--labels", "app=bookstore,role=frontend"]);
            r.running("default", &["apiserver", "bookstore-frontend"]);
            r.apply("api-allow.yaml");
        },
        &[
            allowed("default/bookstore-frontend", "default/apiserver", "80", "app=bookstore"),
            blocked("default/other", "default/apiserver", "80", "app=other"),
            blocked(CLIENT, "default/apiserver", "80", "no labels"),
        ],
    );

    // "Disable mutual access between all Pods in the namespace": no
    // policyTypes, so Ingress only.
    let mut f = wget_nginx(CLIENT, false, "pod to pod in default");
    f.push(blocked(
        NGINX[1],
        CLIENT,
        "80",
        "pod to pod, the other way and across nodes",
    ));
    f.push(blocked(FRONT_END, CLIENT, "80", "from another namespace"));
    f.push(allowed(
        CLIENT,
        FRONT_END,
        "8079",
        "out of the namespace: egress is open",
    ));
    r.step(
        "Disable mutual access between all Pods in the namespace: default-deny",
        |r| {
            cleanup(
                r,
                "default",
                &[
                    "pod/apiserver",
                    "service/apiserver",
                    "pod/bookstore-frontend",
                    "networkpolicy/api-allow",
                ],
            );
            r.apply("default-deny-namespace.yaml");
        },
        &f,
    );

    // `podSelector: {matchLabels: }` (null) selects every pod of secondary.
    r.step(
        "Prohibit other namespace access services: web-deny-other-namespaces",
        |r| {
            cleanup(r, "default", &["networkpolicy/default-deny"]);
            r.k(&["create", "namespace", "secondary"]);
            r.k(&[
                "run",
                "web",
                "--namespace",
                "secondary",
                "--image=nginx",
                "--labels=app=web",
                "--expose",
                "--port",
                "80",
            ]);
            // The recipe's client in the same namespace.
            r.k(&[
                "run",
                "client",
                "--namespace",
                "secondary",
                "--image=alpine",
            ]);
            r.running("secondary", &["web", "client"]);
            r.apply("web-deny-other-namespaces.yaml");
        },
        &[
            allowed("secondary/client", "secondary/web", "80", "same namespace"),
            blocked(CLIENT, "secondary/web", "80", "from namespace default"),
            blocked(
                PROD_CLIENT,
                "secondary/web",
                "80",
                "from namespace production",
            ),
        ],
    );

    r.step(
        "Only allow namespace access to the service: kubectl run web --labels=app=web --expose; web-allow-prod",
        |r| {
            cleanup(
                r,
                "secondary",
                &["pod/web", "service/web", "pod/client", "networkpolicy/web-deny-other-namespaces"],
            );
            r.k(&["run", "web", "--image=nginx", "--labels=app=web", "--expose", "--port", "80"]);
            r.running("default", &["web"]);
            r.apply("web-allow-prod.yaml");
        },
        &[
            allowed(PROD_CLIENT, WEB, "80", "namespace purpose=production"),
            blocked(TEST_CLIENT, WEB, "80", "namespace purpose=testing"),
            blocked(CLIENT, WEB, "80", "its own namespace too"),
        ],
    );

    // `kubectl expose deployment/web --type=LoadBalancer`: today's kubectl
    // run makes no Deployment, and there is no load balancer here. The pod
    // also serves 443 (the runner's annotation), so that "port 80 only" is
    // a policy fact.
    r.step(
        "Allow external network access service: kubectl run web --labels=app=web --port 80; web-allow-external",
        |r| {
            cleanup(r, "default", &["pod/web", "service/web", "networkpolicy/web-allow-prod"]);
            r.k(&[
                "run",
                "web",
                "--image=nginx",
                "--labels=app=web",
                "--port",
                "80",
                "--annotations=kube-nftpolicy.test/serve=443",
            ]);
            r.running("default", &["web"]);
            r.apply("web-allow-external.yaml");
        },
        &[
            allowed(CLIENT, WEB, "80", "from: [] admits every source"),
            allowed(TEST_CLIENT, WEB, "80", "from: [] admits every source"),
            blocked(CLIENT, WEB, "443", "port 80 only"),
        ],
    );

    // Not in the handbook: the last recipe's cleanup, and the pods of the
    // whole replay in namespace default.
    cleanup(
        r,
        "default",
        &[
            "pod/web",
            "networkpolicy/web-allow-external",
            "pod/nginx-701339712-e0qfq",
            "pod/nginx-701339712-o00ef",
            "pod/redis",
            "pod/frontend",
            "pod/other",
            "pod/client",
        ],
    );
}
