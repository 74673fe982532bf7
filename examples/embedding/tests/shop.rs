//! The shop, as its users would see it: through its own API and Warden's public one.

use std::time::Duration;
use warden::ExitReason;
use warden::events::Event;
use warden::runtime::HostError;
use warden::sandbox::MessageError;
use warden::supervisor::ChildState;
use warden::{SpecError, SpecProblem};
use warden_example_shop::{Order, Plugins, Shop};

/// Whether the host runs no tree.
async fn shop_is_closed(host: &warden::Host) -> bool {
    matches!(host.which_children("root").await, Err(HostError::NotFound { .. }))
}

/// Waits for the event `wanted` picks, at most ten seconds.
async fn expect<T>(events: &mut warden::Events, wanted: impl Fn(&Event) -> Option<T>) -> T {
    let wait = async {
        loop {
            let received = events.next().await.expect("the event stream goes on");
            if let Some(found) = received.event().and_then(|r| wanted(&r.event)) {
                return found;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("the event within 10 s")
}

#[tokio::test]
async fn a_sale_goes_through_both_of_the_shops_interfaces() {
    let shop = Shop::open(&Plugins::built()).await.expect("the shop opens");
    // The stocker stocked the shelves from its config, through `inventory`.
    assert_eq!((shop.stock.count("apples"), shop.stock.count("pears")), (10, 4));
    assert_eq!(shop.buy("apples", 3).await, Ok("order 1: apples x 3, 7 left".into()));
    assert_eq!(shop.stock.count("apples"), 7);
    // `orders` is async: the booking was made in the shop's book, by the cashier.
    let booked = Order { number: 1, item: "apples".into(), count: 3, by: "root/cashier".into() };
    assert_eq!(shop.book.orders().await, vec![booked]);
    // The shop's own error, as its function returned it: typed, not a crash.
    assert_eq!(
        shop.buy("pears", 9).await,
        Err(MessageError::Application("only 4 pears in stock".into()))
    );
    assert_eq!(shop.restock("pears", 20).await, Ok("pears: 24 in stock".into()));
    shop.close().await;
}

#[tokio::test]
async fn a_cashier_crash_restarts_it_while_the_shop_keeps_serving() {
    let shop = Shop::open(&Plugins::built()).await.expect("the shop opens");
    let mut events = shop.host.subscribe();
    let crashed = shop.buy("apples", 13).await;
    let Err(MessageError::CalleeCrashed(ExitReason::Trap { panic: true, message, .. })) = &crashed
    else {
        panic!("expected the cashier to crash, got {crashed:?}");
    };
    assert!(message.contains("an unlucky order: 13 apples"), "{message}");
    expect(&mut events, |e| match e {
        Event::ChildExited { path, .. } if path == "root/cashier" => Some(()),
        _ => None,
    })
    .await;
    // Meanwhile the rest of the shop serves.
    assert_eq!(shop.restock("apples", 1).await, Ok("apples: 11 in stock".into()));
    assert_eq!(shop.summary().await, Ok("0 orders; in stock: apples 11, pears 4".into()));
    let incarnation = expect(&mut events, |e| match e {
        Event::ChildStarted { path, incarnation, .. } if path == "root/cashier" => {
            Some(*incarnation)
        }
        _ => None,
    })
    .await;
    assert_eq!(incarnation, 2);
    // Nothing was taken for the order that crashed; the next sale goes through.
    assert_eq!(shop.buy("apples", 2).await, Ok("order 1: apples x 2, 9 left".into()));
    let children = shop.host.which_children("root").await.unwrap();
    let states: Vec<(&str, ChildState, u64)> =
        children.iter().map(|c| (c.name.as_str(), c.state, c.incarnation)).collect();
    assert_eq!(
        states,
        [
            ("stocker", ChildState::Running, 1),
            ("cashier", ChildState::Running, 2),
            ("auditor", ChildState::Running, 1)
        ]
    );
    shop.close().await;
}

#[tokio::test]
async fn the_shop_calls_its_auditor_typed() {
    let shop = Shop::open(&Plugins::built()).await.expect("the shop opens");
    assert_eq!(shop.summary().await, Ok("0 orders; in stock: apples 10, pears 4".into()));
    shop.buy("pears", 4).await.expect("sold");
    assert_eq!(shop.summary().await, Ok("1 orders; in stock: apples 10, pears 0".into()));
    shop.close().await;
}

#[tokio::test]
async fn a_plugin_is_given_only_the_interfaces_its_grants_name() {
    let plugins = Plugins::built();
    let (stock, book) = (Default::default(), Default::default());
    let host = Shop::host(&stock, &book).unwrap();
    let mut tree = Shop::tree(&plugins);
    // The cashier imports `inventory` and `orders`; grant it `orders` alone.
    let warden::supervisor::ChildStart::Plugin(cashier) = &mut tree.children[1].start else {
        unreachable!("the cashier is a plugin")
    };
    cashier.grants.interfaces = vec!["acme:shop/orders".into()];
    let refused = host.start(tree).await.expect_err("the cashier must not start");
    let HostError::InvalidSpec(problems) = &refused else {
        panic!("expected the spec to be refused, got {refused:?}");
    };
    let not_granted = SpecProblem::NotGranted { import: "acme:shop/inventory@0.1.0".into() };
    assert_eq!(problems, &[SpecError { path: "root/cashier".into(), problem: not_granted }]);
    // Nothing started: the stocker before it in start order neither.
    assert!(shop_is_closed(&host).await);
}
