//! `cargo run -p warden-example-shop`: the shop opens, sells, survives a cashier
//! crash (the cashier is restarted while the rest of the shop goes on), and asks its
//! auditor for a typed summary.

use warden::{Event, Received};
use warden_example_shop::{Plugins, Shop};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shop = Shop::open(&Plugins::built()).await?;
    let mut events = shop.host.subscribe();
    println!("the shop is open: {}", shop.summary().await?);
    println!("sell 3 apples:  {}", shop.buy("apples", 3).await?);
    println!(
        "sell 9 pears:   {}",
        shop.buy("pears", 9).await.unwrap_or_else(|e| format!("refused: {e}"))
    );
    println!("restock pears:  {}", shop.restock("pears", 20).await?);
    println!(
        "sell 13 pears:  {}",
        shop.buy("pears", 13).await.unwrap_or_else(|e| format!("refused: {e}"))
    );
    // The cashier crashed on that one and its supervisor restarted it.
    while let Some(received) = events.next().await {
        let Received::Event(record) = received else { continue };
        match record.event {
            Event::ChildExited { path, reason, .. } => println!("  {path} exited: {reason}"),
            Event::ChildStarted { path, incarnation, .. } if path == "root/cashier" => {
                println!("  {path} started again (incarnation {incarnation})");
                break;
            }
            _ => {}
        }
    }
    println!("sell 9 pears:   {}", shop.buy("pears", 9).await?);
    println!("the auditor says: {}", shop.summary().await?);
    for order in shop.book.orders().await {
        println!("  order {}: {} x {} by {}", order.number, order.item, order.count, order.by);
    }
    shop.close().await;
    Ok(())
}
